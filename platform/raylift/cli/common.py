"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from raylift.errors import RayliftError

F = TypeVar("F", bound=Callable[..., Any])

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class State:
    """Global flags set on the ``raylift`` group."""

    debug = False
    verbose = False


def handle_errors(func: F) -> F:
    """RayliftError -> one line on stderr and its exit code (a traceback with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RayliftError as exc:
            if State.debug:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def set_option(func: F) -> F:
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a spec key, e.g. --set train.lr=0.01 (repeatable).",
    )(func)


def address_option(func: F) -> F:
    return click.option(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray).",
    )(func)
