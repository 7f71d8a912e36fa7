"""NVML errors as migsched errors that name the GPU, the call and what to do."""

from __future__ import annotations

from migsched.errors import MigschedError

# NVML return codes (mig-hardware.md §5) and what an operator can do about each.
_HINTS = {
    1: "NVML is not initialised: is the NVIDIA driver loaded (`nvidia-smi` works)?",
    2: "an argument NVML refused (a placement that is not legal for this profile?)",
    3: "not supported on this GPU or driver (is it MIG-capable, R470 or newer?)",
    4: "no permission: run as root, or grant the mig/config capability (docs/nvml.md)",
    6: "not found: the instance or device is gone (destroyed behind migsched's back?)",
    16: "the GPU needs a reset or a reboot to apply the change",
    19: "in use: a process or compute instance still holds it; stop it and retry",
    23: "insufficient resources: the slots or the profile's maximum are taken",
}


class NvmlUnavailableError(MigschedError):
    """nvidia-ml-py is not installed or no NVIDIA driver can be loaded."""


class NvmlError(MigschedError):
    """An NVML call failed; `code` is NVML's return code (19 = in use, 23 = insufficient resources)."""

    def __init__(self, call: str, gpu: int | None, code: int, text: str) -> None:
        self.call, self.gpu, self.code = call, gpu, code
        where = f"GPU {gpu}: " if gpu is not None else ""
        hint = _HINTS.get(code, "see the NVML documentation for this code")
        super().__init__(f"{where}{call} failed: {text} (NVML error {code}); {hint}")

    @property
    def in_use(self) -> bool:
        return self.code == 19


def wrap(nv, call: str, gpu: int | None, *args):
    """Call `nv.<call>(*args)`, turning an NVMLError into `NvmlError`."""
    try:
        return getattr(nv, call)(*args)
    except nv.NVMLError as exc:
        raise NvmlError(call, gpu, int(getattr(exc, "value", -1)), str(exc)) from None
