"""``Requirement``: one private Ray name raylift relies on, and how to tell that it is gone."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Requirement:
    """``attribute`` (dotted, e.g. ``Class.method``; empty: the module itself) in ``module``.

    ``uses``: names the attribute's source must mention (instance attributes set in
    ``__init__``, parameters, hooks it calls), or, for a protobuf message, its fields.
    """

    module: str
    attribute: str = ""
    uses: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}" if self.attribute else self.module

    def missing(self) -> list[str]:
        """What of this requirement the installed Ray lacks (empty: all there)."""
        try:
            found: Any = importlib.import_module(self.module)
        except Exception as error:  # ImportError, or the module fails to import
            return [f"{self} (import failed: {type(error).__name__}: {error})"]
        for part in filter(None, self.attribute.split(".")):
            try:
                found = getattr(found, part)
            except AttributeError:
                return [str(self)]
        if not self.uses:
            return []
        mentioned = _mentioned(found)
        if mentioned is None:
            return [f"{self} (no source to look for {', '.join(self.uses)})"]
        return [f"{self} uses {name}" for name in self.uses if name not in mentioned]


def _mentioned(found: Any) -> str | set[str] | None:
    """The source text of ``found`` (a protobuf message: its field names); None if unknown."""
    descriptor = getattr(found, "DESCRIPTOR", None)
    fields = getattr(descriptor, "fields_by_name", None)
    if fields is not None:
        return set(fields)
    if isinstance(found, property):
        found = found.fget
    try:
        return inspect.getsource(found)
    except (OSError, TypeError):
        return None


def missing(requirements: Iterable[Requirement]) -> list[str]:
    """Every missing name among ``requirements``, in order."""
    return [gap for requirement in requirements for gap in requirement.missing()]
