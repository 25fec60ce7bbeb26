"""Checkpoint files: written then sealed with a manifest; loaded weights-only.

A checkpoint folder is complete only when ``manifest.json`` (written last)
lists every file with its size and sha256 and they all match. A sharded (FSDP)
checkpoint is written by every rank into the same folder: rank 0's manifest
lists every rank's files, so the folder verifies only once all are there. ``load_state``
refuses anything else, so a half-written checkpoint is never resumed from.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

import numpy as np
import torch

from raylift.errors import CheckpointError

STATE_FILE = "state.pt"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def size_bytes(directory: str) -> int:
    """Bytes of the files under ``directory``."""
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(directory)
        for name in names
    )


def file_digests(directory: str, *, manifest_name: str = MANIFEST_FILE) -> dict[str, Any]:
    """Size and sha256 of every file under ``directory`` (by relative path)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if rel == manifest_name or rel.endswith(".tmp"):
                continue
            files[rel] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
    return files


def seal(
    directory: str,
    extra: dict[str, Any] | None = None,
    *,
    manifest_name: str = MANIFEST_FILE,
    other_files: dict[str, Any] | None = None,
) -> None:
    """Write the manifest for every file in ``directory`` (atomically, last).

    ``other_files``: digests of files other ranks write into the same checkpoint
    (sharded checkpoints): the folder verifies only once they are all there.
    """
    files = {**(other_files or {}), **file_digests(directory, manifest_name=manifest_name)}
    manifest = {"format_version": FORMAT_VERSION, "files": files, **(extra or {})}
    tmp = os.path.join(directory, manifest_name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, os.path.join(directory, manifest_name))


def verify(directory: str, *, manifest_name: str = MANIFEST_FILE) -> dict[str, Any]:
    """The manifest of a complete folder; CheckpointError if anything is off."""
    manifest_path = os.path.join(directory, manifest_name)
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: incomplete (no {manifest_name})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{directory}: unreadable {manifest_name}: {exc}") from None
    for rel, expected in manifest.get("files", {}).items():
        path = os.path.join(directory, rel)
        if not os.path.isfile(path) or os.path.getsize(path) != expected["bytes"]:
            raise CheckpointError(f"{directory}: {rel} is missing or truncated")
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{directory}: {rel} fails its checksum")
    return manifest


def rng_states() -> dict[str, Any]:
    """This process's RNG states, in a weights-only-loadable form."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
        },
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = json.loads(states["python"])
    random.setstate((version, tuple(internal), gauss))
    keys = states["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, states["numpy"]["pos"], 0, 0.0))


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
    seal(directory, extra, other_files=other_files)


def load_state(directory: str) -> dict[str, Any]:
    """Verify the folder, then ``torch.load(weights_only=True)`` its state."""
    verify(directory)
    try:
        return torch.load(
            os.path.join(directory, STATE_FILE), weights_only=True, map_location="cpu"
        )
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot load {STATE_FILE}: {exc}") from exc
