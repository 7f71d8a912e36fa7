"""Policies by name: `@register` on the class, `create_policy("greedy", **options)` to build one.

Variants are constructor options (`create_policy("migm", scheme="head")`), not new names.
Third-party policies can register through the `migsched.policies` entry-point group.
"""

from __future__ import annotations

import inspect
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, TypeVar

from migsched.errors import UnknownNameError
from migsched.policies.base import Policy

P = TypeVar("P", bound=type[Policy])

_REGISTRY: dict[str, type[Policy]] = {}
# Built-in policy modules, imported on first lookup so that `import migsched` stays light.
_BUILTIN_MODULES = (
    "migsched.policies.serial",
    "migsched.policies.static",
    "migsched.policies.greedy",
    "migsched.policies.migm",
    "migsched.policies.optimal",
)
_loaded = False


def register(cls: P) -> P:
    """Class decorator: make a policy available by its `name`."""
    if not cls.name:
        raise ValueError(f"policy class {cls.__name__} has no name")
    _REGISTRY[cls.name.lower()] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a missing dependency inside the module is a real error
                raise
    for ep in entry_points(group="migsched.policies"):
        register(ep.load())


def policy_names(include_clairvoyant: bool = False) -> list[str]:
    """Registered policy names: the built-ins in `_BUILTIN_MODULES` order (baselines first, whatever
    order their modules happened to be imported in), then plug-ins in registration order;
    clairvoyant references only on request."""
    _load_builtins()
    rank = {m: i for i, m in enumerate(_BUILTIN_MODULES)}

    def key(item: tuple[int, tuple[str, type[Policy]]]) -> tuple[int, int]:
        pos, (_, cls) = item
        mod = cls.__module__
        home = next((m for m in _BUILTIN_MODULES if mod == m or mod.startswith(m + ".")), None)
        return (rank[home], pos) if home is not None else (len(rank), pos)

    ordered = sorted(enumerate(_REGISTRY.items()), key=key)
    return [n for _, (n, c) in ordered if include_clairvoyant or not c.clairvoyant]


def get_policy_class(name: str) -> type[Policy]:
    """The class registered as `name` (case-insensitive).

    Raises:
        UnknownNameError: no such policy; the message lists the registered ones.
    """
    _load_builtins()
    try:
        return _REGISTRY[name.strip().lower()]
    except KeyError:
        raise UnknownNameError("policy", name, _REGISTRY) from None


def create_policy(name: str, **options: Any) -> Policy:
    """Build the policy registered as `name` with constructor `options`."""
    return get_policy_class(name)(**options)


def takes_option(name: str, option: str) -> bool:
    """Whether the policy registered as `name` has a constructor option `option` (e.g. which
    policies a `--history` file is for)."""
    return option in inspect.signature(get_policy_class(name).__init__).parameters


def history_policies() -> list[str]:
    """The registered policies that read and extend a history file (`--history`)."""
    return [n for n in policy_names(include_clairvoyant=True) if takes_option(n, "history")]
