"""The `nvml` backend: real MIG through NVML (`pip install 'migsched[nvml]'`), imported lazily."""
