"""Every use of a private Ray name (internal modules, private attributes, patches), in one place.

raylift is pinned to Ray 2.60.0. Each module here wraps one concern and declares the
private names it needs as ``REQUIRES``; ``check()`` imports each of them and lists the
missing ones, so a Ray upgrade starts with a list instead of a surprise (a unit test
runs it against the installed Ray). No module imports Ray at import time: the CLI
stays import-light. See docs/ray-internals.md for what each piece is for and what
degrades when Ray changes it.

Layer: above specs, below training; imports only raylift.errors/storage/registry/ports.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from raylift.ray_compat.requirements import Requirement, missing

MODULES = (
    "elastic",
    "nodes",
    "train_callbacks",
    "train_context",
    "trainer",
    "kv",
    "gcs",
    "runtime_env",
    "ray_start",
    "session",
)

__all__ = ["MODULES", "Requirement", "check", "requirements"]


def requirements() -> list[Requirement]:
    """What every ray_compat module declares it needs, module by module."""
    found: list[Requirement] = []
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        found.extend(module.REQUIRES)
    return found


def check(needed: Iterable[Requirement] | None = None) -> list[str]:
    """The private Ray names (of ``needed``, by default all declared) the installed Ray lacks.

    Empty on the pinned Ray. Each entry is ``module:Attribute.path``, with
    `` uses NAME`` when the attribute is there but no longer mentions a name raylift
    relies on (an instance attribute, a parameter, a hook it calls).
    """
    return missing(requirements() if needed is None else needed)
