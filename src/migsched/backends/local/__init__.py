"""The `local` backend: real child processes run as if each were on its own MIG instance."""
