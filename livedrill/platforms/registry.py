"""The platforms livedrill can drill, by `kind`: each platform package registers one `PlatformKind`.

A platform is one package under `livedrill/platforms/<kind>/` whose `__init__` registers its spec section
(a `PlatformConfig` subclass with `kind: Literal["<kind>"]`) and how to open its adapter; the adapter
carries its pre-flight checks, post-checks, undo actions and optional capabilities (`platforms.base`).
The spec's `platform:` union is built from this registry, so a new platform is its package plus its name
in `BUILTIN` (or a `register()` call of its own, as the in-test platform of tests/e2e does).

Registering imports no client library: a package's `__init__` imports only its config, and `open`
imports the adapter (and with it `kubernetes` or `libvirt`) when a drill actually needs it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from livedrill.specbase import PlatformConfig

if TYPE_CHECKING:
    from livedrill.platforms.base import AdapterContext, PlatformAdapter

BUILTIN = ("kubevirt", "libvirt")  # packages under livedrill.platforms, loaded on first use


@dataclass(frozen=True)
class PlatformKind:
    kind: str
    config: type[PlatformConfig]  # the spec's `platform:` section of this kind
    open: Callable[[Any, "AdapterContext"], "PlatformAdapter"]  # (its config, context) -> adapter
    # Imports what `open` will need (the client library), ahead of the drill: the command line calls it
    # while the Prefect API boots, so the pre-flight does not wait for the imports.
    preload: Callable[[], None] | None = None


_KINDS: dict[str, PlatformKind] = {}
_LISTENERS: list[Callable[[], None]] = []
_loaded = False


def register(platform: PlatformKind) -> None:
    """Add (or replace) the platform of `platform.kind`; whoever built on the registry is told to rebuild."""
    _KINDS[platform.kind] = platform
    if _loaded:
        for listener in _LISTENERS:
            listener()


def unregister(kind: str) -> None:
    """Remove a platform (a test's own platform, when the test ends)."""
    if _KINDS.pop(kind, None) is not None and _loaded:
        for listener in _LISTENERS:
            listener()


def on_change(listener: Callable[[], None]) -> None:
    """`listener()` runs after each registration once the built-in platforms are loaded (the spec's union)."""
    _LISTENERS.append(listener)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        for name in BUILTIN:
            importlib.import_module(f"livedrill.platforms.{name}")
        _loaded = True


def kinds() -> dict[str, PlatformKind]:
    _load_builtin()
    return dict(_KINDS)


def get(kind: str) -> PlatformKind:
    known = kinds()
    if kind not in known:
        raise KeyError(f"no platform of kind {kind!r} (known: {sorted(known)})")
    return known[kind]


def preload(kind: str) -> None:
    """Import the client library of the platform of `kind` now, if its package says how."""
    platform = get(kind)
    if platform.preload is not None:
        platform.preload()


def open_adapter(config: PlatformConfig, context: "AdapterContext") -> "PlatformAdapter":
    """The adapter of the spec's platform section."""
    return get(config.kind).open(config, context)
