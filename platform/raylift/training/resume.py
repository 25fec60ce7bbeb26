"""Pick the checkpoint a restarted attempt resumes from: the newest complete one.

Ray registers a checkpoint only when its controller polls the worker's report,
so one reported just before a failure can be on storage but unknown to Ray.
Every checkpoint folder is sealed by a manifest (see ``checkpoint.py``), so the
newest folder that verifies is the right one; a half-written one is skipped.
"""

from __future__ import annotations

import re
import tempfile
from typing import Any

from raylift import storage
from raylift.errors import CheckpointError
from raylift.training import checkpoint as ckpt

CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d{8})$")


def checkpoint_dir_name(step: int) -> str:
    return f"checkpoint_{step:08d}"


def checkpoint_steps(run_dir: str) -> list[tuple[int, str]]:
    """(step, folder) of every checkpoint folder in the run, newest first."""
    found = []
    for name in storage.list_dirs(run_dir):
        match = CHECKPOINT_DIR.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return sorted(found, reverse=True)


def load_newest_complete(run_dir: str) -> tuple[dict[str, Any], str] | None:
    """The state of the newest checkpoint that verifies, and its folder name."""
    for _, name in checkpoint_steps(run_dir):
        try:
            return _load(storage.join(run_dir, name)), name
        except CheckpointError:
            continue  # half-written or damaged: fall back to the previous one
    return None


def load_named(run_dir: str, name: str) -> dict[str, Any]:
    return _load(storage.join(run_dir, name))


def _load(path: str) -> dict[str, Any]:
    if not storage.is_remote(path):
        return ckpt.load_state(storage.local_path(path))
    with tempfile.TemporaryDirectory(prefix="raylift-resume-") as tmp:
        return ckpt.load_state(storage.download_dir(path, tmp))


def agree_on(name: str | None) -> str | None:
    """Rank 0's choice, broadcast so every rank resumes from the same folder."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return name
    box = [name]
    dist.broadcast_object_list(box, src=0)
    return box[0]
