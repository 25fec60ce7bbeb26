"""A small name -> factory registry, shared by data sets and models.

Each entry has a pydantic params model (``extra="forbid"``) so a typo in a
spec's ``params`` is caught at load time with a did-you-mean, before Ray starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from raylift.errors import RegistryError

F = TypeVar("F", bound=Callable[..., Any])


class Params(BaseModel):
    """Base class of every registry entry's parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check_files(self) -> None:
        """Raise DataError if files the params name are missing (cheap; no reading)."""

    def check_tokenizer(self, tokenizer: str | None) -> None:
        """Raise SpecError if the data set cannot use ``tokenizer`` (the job's
        ``data.tokenizer`` or its default; None: there is none). Cheap; nothing is loaded."""

    def with_absolute_paths(self) -> Params:
        """A copy whose relative paths are made absolute (workers may run elsewhere)."""
        return self


@dataclass(frozen=True)
class Entry(Generic[F]):
    name: str
    params_model: type[Params]
    factory: F
    description: str


def did_you_mean(word: str, choices: list[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class Registry(Generic[F]):
    """Named factories of one kind ("model", "data set")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, params_model: type[Params], description: str) -> Callable[[F], F]:
        """Decorator: ``@MODELS.register("mlp", MLPParams, "...")``."""

        def add(factory: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, params_model, factory, description)
            return factory

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Entry[F]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise RegistryError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; known: {known}"
            ) from None

    def parse_params(self, name: str, params: dict[str, Any] | None) -> Params:
        """Validate ``params`` against the entry's params model."""
        return self.get(name).params_model.model_validate(params or {})
