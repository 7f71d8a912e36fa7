"""Live runs: the crash-safe store wired into the run loop, resume, and the progress view.

`migsched run` builds on these: `session.start_run` / `session.resume_run` open a backend, a
policy and the store, `recorder.StoreRecorder` writes every state change before the backend acts
on it, and `restore.restore_core` rebuilds the core from the store after a crash.
"""
