"""The backend contract lives in the core (`migsched.core.backend`); re-exported for backends."""

from migsched.core.backend import Backend, Capabilities, GpuInfo, InstanceInfo, RunSettings

__all__ = ["Backend", "Capabilities", "GpuInfo", "InstanceInfo", "RunSettings"]
