"""The scheduler core: events (`events.py`) in, actions out, state a policy can see (`state.py`),
the timeline of what happened (`timeline.py`) and the core itself (`scheduler.py`)."""
