"""Backends carry out the core's actions and report events: the discrete-event simulator
(`sim/`, the embedded default) and, in later work, local processes, NVML and Ray.

Backend-specific behaviour lives only here; the core and the policies never ask which backend
runs them.
"""
