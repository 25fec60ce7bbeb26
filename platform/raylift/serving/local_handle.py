"""A deployment handle look-alike for a model served inside the ingress replica.

With one model in a spec, the ingress replica loads the model itself (no second
hop through Ray: the hop cost more CPU per request than the model call did, see
benchmarks/serve.py). The ingress code stays the same: it calls
``handle.<method>.remote(...)`` and awaits the result or iterates the stream,
and ``LocalHandle`` gives it the same surface over a ``ModelServer`` instance.
Blocking calls (generation) run in a worker thread so the event loop keeps
accepting requests.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any


class LocalHandle:
    def __init__(self, server: Any) -> None:
        self._server = server

    def options(self, **_: Any) -> LocalHandle:
        return self  # stream=True: a generator method streams either way

    def __getattr__(self, name: str) -> _LocalMethod:
        return _LocalMethod(getattr(self._server, name))


class _LocalMethod:
    def __init__(self, method: Callable[..., Any]) -> None:
        self._method = method

    def remote(self, *args: Any) -> Any:
        if inspect.iscoroutinefunction(self._method):
            return self._method(*args)
        if inspect.isgeneratorfunction(self._method):
            return _in_thread(self._method(*args))
        return asyncio.to_thread(self._method, *args)


async def _in_thread(items: Iterator[Any]) -> AsyncIterator[Any]:
    """A blocking generator as an async one: each item computed in a worker thread."""
    done = object()
    while True:
        item = await asyncio.to_thread(next, items, done)
        if item is done:
            return
        yield item
