"""Checkpoint folders are sealed by a manifest and verified before loading."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from raylift.errors import CheckpointError
from raylift.training import checkpoint as ckpt


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(4.0)}, "step": 7, "spec": "{}"}
    ckpt.save_state(str(tmp_path), state, extra={"step": 7})
    loaded = ckpt.load_state(str(tmp_path))
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert ckpt.verify(str(tmp_path))["step"] == 7


def test_unsealed_folder_is_refused(tmp_path: Path) -> None:
    torch.save({"step": 1}, tmp_path / ckpt.STATE_FILE)
    with pytest.raises(CheckpointError, match="incomplete"):
        ckpt.load_state(str(tmp_path))


def test_truncated_or_altered_file_is_refused(tmp_path: Path) -> None:
    ckpt.save_state(str(tmp_path), {"model": {"w": torch.randn(100)}})
    path = tmp_path / ckpt.STATE_FILE
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load_state(str(tmp_path))
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="checksum"):
        ckpt.load_state(str(tmp_path))


def test_pickled_code_is_not_loaded(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / ckpt.STATE_FILE)
    ckpt.seal(str(tmp_path))
    with pytest.raises(CheckpointError, match="cannot load"):
        ckpt.load_state(str(tmp_path))


def test_rng_states_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    ckpt.save_state(str(tmp_path), {"rng": ckpt.rng_states()})
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(9)
    random.seed(9)
    np.random.seed(9)
    ckpt.set_rng_states(ckpt.load_state(str(tmp_path))["rng"])
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
