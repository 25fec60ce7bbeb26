"""Checkpoint folders on storage: names, the state file, newest complete, best/.

``<run>/checkpoint_<step:08d>/`` holds ``state.pt`` (``torch.load(weights_only=True)``)
and, under FSDP, every rank's DCP shard files; ``manifest.json`` (``sealed.py``)
seals it. ``<run>/best/checkpoint_<step>/`` is a sealed copy of the best one.

Ray registers a checkpoint only when its controller polls the worker's report,
so one reported just before a failure can be on storage but unknown to Ray:
the newest folder that verifies is the one to resume from; a half-written one
is skipped. Who writes and prunes them is ``training/checkpointing.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import torch

from raylift import storage
from raylift.artifacts import sealed
from raylift.errors import CheckpointError, StorageError

CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d{8})$")
BEST_DIR = "best"
STATE_FILE = "state.pt"


def save_state(
    directory: str,
    state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    *,
    other_files: dict[str, Any] | None = None,
) -> None:
    """Write ``state`` (tensors, numbers, strings) and seal the folder."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, STATE_FILE)
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)
    sealed.seal(directory, extra, other_files=other_files)


def load_state(directory: str) -> dict[str, Any]:
    """Verify the folder, then ``torch.load(weights_only=True)`` its state."""
    sealed.verify(directory)
    try:
        return torch.load(
            os.path.join(directory, STATE_FILE), weights_only=True, map_location="cpu"
        )
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot load {STATE_FILE}: {exc}") from exc


def checkpoint_dir_name(step: int) -> str:
    return f"checkpoint_{step:08d}"


def step_of(name: str) -> int:
    """The step in a checkpoint folder name (-1 if it is not one)."""
    match = CHECKPOINT_DIR.match(name)
    return int(match.group(1)) if match else -1


def checkpoint_steps(run_dir: str) -> list[tuple[int, str]]:
    """(step, folder) of every checkpoint folder in the run, newest first."""
    found = []
    for name in storage.list_dirs(run_dir):
        match = CHECKPOINT_DIR.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return sorted(found, reverse=True)


def load_newest_complete(run_dir: str) -> tuple[dict[str, Any], str, list[str]] | None:
    """The newest checkpoint that verifies: its state, its folder name, and the
    newer folders that did not verify (half-written: a crash during the write)."""
    incomplete = []
    for _, name in checkpoint_steps(run_dir):
        try:
            return _load(storage.join(run_dir, name)), name, incomplete
        except CheckpointError:
            incomplete.append(name)  # fall back to the previous one
    return None


def remove_checkpoint(run_dir: str, name: str) -> None:
    with contextlib.suppress(OSError, StorageError):
        storage.remove_dir(storage.join(run_dir, name))


def prune_orphans(run_dir: str, orphans: list[str], keep: int) -> list[str]:
    """Delete the orphans (checkpoints Ray never registered, so never prunes) that
    are no longer among the ``keep`` newest; returns the orphans still kept."""
    newest = {name for _, name in checkpoint_steps(run_dir)[:keep]}
    kept = []
    for name in orphans:
        if name in newest:
            kept.append(name)
        else:
            remove_checkpoint(run_dir, name)
    return kept


def keep_best(run_dir: str, local_checkpoint: str, step: int) -> None:
    """Copy a sealed checkpoint to ``<run>/best/`` and drop the previous best.

    The copy is complete only once its manifest is there (uploaded with it), so
    a crash mid-copy leaves the previous best as the one that verifies.
    """
    best_root = storage.join(run_dir, BEST_DIR)
    name = checkpoint_dir_name(step)
    storage.upload_dir(local_checkpoint, storage.join(best_root, name))
    for old in storage.list_dirs(best_root):
        if old != name:
            remove_checkpoint(best_root, old)


def best_checkpoints(run_dir: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, metrics) of the kept best checkpoint(s) that verify."""
    best_root = storage.join(run_dir, BEST_DIR)
    found = []
    for name in storage.list_dirs(best_root):
        path = storage.join(best_root, name)
        try:
            manifest = _manifest(path)
        except CheckpointError:
            continue
        found.append((path, dict(manifest.get("metrics") or {})))
    return found


def newest_complete_checkpoint(run_dir: str) -> tuple[str, dict[str, Any]] | None:
    """(path, metrics) of the newest checkpoint folder in the run that verifies."""
    for _, name in checkpoint_steps(run_dir):
        path = storage.join(run_dir, name)
        try:
            return path, dict(_manifest(path).get("metrics") or {})
        except CheckpointError:
            continue
    return None


def _manifest(path: str) -> dict[str, Any]:
    if not storage.is_remote(path):
        return sealed.verify(storage.local_path(path))
    with tempfile.TemporaryDirectory(prefix="raylift-best-") as tmp:
        return sealed.verify(storage.download_dir(path, tmp))


def load_named(run_dir: str, name: str) -> dict[str, Any]:
    return _load(storage.join(run_dir, name))


def _load(path: str) -> dict[str, Any]:
    if not storage.is_remote(path):
        return load_state(storage.local_path(path))
    with tempfile.TemporaryDirectory(prefix="raylift-resume-") as tmp:
        return load_state(storage.download_dir(path, tmp))


@contextlib.contextmanager
def local_folder(run_dir: str, name: str) -> Iterator[str]:
    """A checkpoint folder as a local path: where it lies, or a temporary download."""
    path = storage.join(run_dir, name)
    if not storage.is_remote(path):
        yield storage.local_path(path)
        return
    with tempfile.TemporaryDirectory(prefix="raylift-shards-") as tmp:
        yield storage.download_dir(path, tmp)


def keep_best_from_storage(run_dir: str, name: str, step: int) -> None:
    """:func:`keep_best` for a checkpoint that is already complete on storage only
    (sharded: every rank uploaded its part)."""
    with local_folder(run_dir, name) as folder:
        keep_best(run_dir, folder, step)
