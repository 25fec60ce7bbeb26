"""Lazy windows over prepared token shards: what a worker indexes instead of a tensor.

A split's token stream is its document runs (``*_spans.npy``) one after another;
window ``i`` is its tokens ``[i*T, i*T + T + 1)`` (stride T, context T). The
objects pickle to a few paths and numbers, and memory-map the shards only when
first indexed in a process, so a worker reads just the windows it is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from raylift.data.token_shards import SPANS, local_folder

Part = Literal["inputs", "targets"]


class SplitWindows:
    """The windows of one split (train or val) of a prepared folder."""

    def __init__(self, path: str, index: dict[str, Any], split: str, context_length: int) -> None:
        self.path = path  # the prepared folder or URI (fetched to the node cache when remote)
        self.index = index
        self.split = split
        self.context_length = context_length
        tokens = int(index["split"][split]["tokens"])
        self.num_windows = max(0, (tokens - 1) // context_length)
        self._maps: list[np.memmap] | None = None
        self._spans: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = state["_spans"] = None  # reopened where unpickled
        return state

    def _open(self) -> tuple[list[np.memmap], np.ndarray]:
        if self._maps is None or self._spans is None:
            folder = local_folder(self.path, self.index)
            dtype = np.dtype(self.index["dtype"])
            self._maps = [
                np.memmap(folder / s["file"], dtype=dtype, mode="r") if s["tokens"] else None
                for s in self.index["shards"]
            ]  # type: ignore[misc]
            self._spans = np.load(Path(folder) / SPANS[self.split], mmap_mode="r")
        return self._maps, self._spans

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Windows ``rows`` as an int64 array (len(rows), T + 1)."""
        maps, spans = self._open()
        width = self.context_length + 1
        out = np.empty((len(rows), width), dtype=np.int64)
        cumulative = spans[3]
        for i, row in enumerate(rows.tolist()):
            if not -self.num_windows <= row < self.num_windows:
                raise IndexError(f"window {row} out of range ({self.num_windows} windows)")
            position = (row % self.num_windows) * self.context_length
            filled = 0
            run = int(np.searchsorted(cumulative, position, side="right")) - 1
            while filled < width:
                shard, start, stop, first = (int(v) for v in spans[:, run])
                begin = start + position + filled - first
                take = min(width - filled, stop - begin)
                out[i, filled : filled + take] = maps[shard][begin : begin + take]
                filled += take
                run += 1
        return out


class TokenWindows:
    """``inputs`` (a window's first T tokens) or ``targets`` (its last T) of a split,
    indexed like an int64 tensor (N, T): ``x[LongTensor]``, ``x[a:b]``, ``x[i]``."""

    def __init__(self, windows: SplitWindows, part: Part) -> None:
        self.windows = windows
        self.part = part

    def __len__(self) -> int:
        return self.windows.num_windows

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.windows.num_windows, self.windows.context_length))

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, int | np.integer) or (isinstance(key, torch.Tensor) and key.dim() == 0):
            return self[torch.tensor([int(key)])][0]
        if isinstance(key, slice):
            span = range(len(self))[key]  # no array of every row: a split may be huge
            rows = np.arange(span.start, span.stop, span.step, dtype=np.int64)
        elif isinstance(key, torch.Tensor | np.ndarray | list | tuple):
            rows = np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key)
            if rows.dtype == bool:
                rows = np.flatnonzero(rows)
            rows = rows.astype(np.int64).reshape(-1)
        else:
            raise TypeError(f"token windows are indexed by int, slice or index tensor, not {key!r}")
        windows = self.windows.rows(rows)
        chosen = windows[:, :-1] if self.part == "inputs" else windows[:, 1:]
        return torch.from_numpy(np.ascontiguousarray(chosen))

    def __repr__(self) -> str:
        return (
            f"TokenWindows({self.windows.path!r}, split={self.windows.split}, part={self.part}, "
            f"shape={tuple(self.shape)})"
        )
