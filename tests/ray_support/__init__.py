"""Support for the Ray cluster tests: a private network namespace and the scenarios run inside it."""
