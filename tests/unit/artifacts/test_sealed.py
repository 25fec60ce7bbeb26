"""Sealed folders: one without its manifest, or with a truncated or altered file, is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raylift.artifacts import checkpoints
from raylift.errors import CheckpointError


def test_unsealed_folder_is_refused(tmp_path: Path) -> None:
    torch.save({"step": 1}, tmp_path / checkpoints.STATE_FILE)
    with pytest.raises(CheckpointError, match="incomplete"):
        checkpoints.load_state(str(tmp_path))


def test_truncated_or_altered_file_is_refused(tmp_path: Path) -> None:
    checkpoints.save_state(str(tmp_path), {"model": {"w": torch.randn(100)}})
    path = tmp_path / checkpoints.STATE_FILE
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoints.load_state(str(tmp_path))
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="checksum"):
        checkpoints.load_state(str(tmp_path))
