"""The `migsched` command line: a thin layer from argv to library calls.

Each group of verbs lives in its own module and registers on the shared `app`; `main` turns any
`MigschedError` (a user's mistake) into a one-line message and exit status 2, never a traceback.
"""
