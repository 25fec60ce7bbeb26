"""Sealed folders: a manifest written last lists every file with its size and sha256.

A folder (a checkpoint, an export) is complete only when its manifest is there
and every file it lists matches. A sharded (FSDP) checkpoint is written by every
rank into the same folder: rank 0's manifest lists every rank's files, so the
folder verifies only once all are there. Readers verify first, so a
half-written folder is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from raylift.errors import CheckpointError

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
