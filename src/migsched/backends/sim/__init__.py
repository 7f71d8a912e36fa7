"""The discrete-event simulator backend: virtual clock, seeded, many GPUs (see docs/simulator.md)."""

from migsched.backends.sim.costs import SimCosts
from migsched.backends.sim.simulator import Simulator

__all__ = ["SimCosts", "Simulator"]
