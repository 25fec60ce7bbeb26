"""Checkpoint folders are sealed by a manifest and verified before loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raylift.artifacts import checkpoints, sealed
from raylift.errors import CheckpointError


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(4.0)}, "step": 7, "spec": "{}"}
    checkpoints.save_state(str(tmp_path), state, extra={"step": 7})
    loaded = checkpoints.load_state(str(tmp_path))
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert sealed.verify(str(tmp_path))["step"] == 7


def test_pickled_code_is_not_loaded(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / checkpoints.STATE_FILE)
    sealed.seal(str(tmp_path))
    with pytest.raises(CheckpointError, match="cannot load"):
        checkpoints.load_state(str(tmp_path))


def _checkpoint(
    run_dir: Path, step: int, *, sealed: bool = True, metrics: dict | None = None
) -> str:
    folder = run_dir / checkpoints.checkpoint_dir_name(step)
    folder.mkdir(parents=True)
    if sealed:
        checkpoints.save_state(
            str(folder), {"step": step}, extra={"step": step, "metrics": metrics or {}}
        )
    else:  # a crash mid-write: no manifest
        torch.save({"step": step}, folder / checkpoints.STATE_FILE)
    return folder.name


def test_newest_complete_checkpoint_skips_and_lists_half_written_ones(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 20)
    _checkpoint(tmp_path, 40)
    _checkpoint(tmp_path, 60, sealed=False)
    state, name, incomplete = checkpoints.load_newest_complete(str(tmp_path))
    assert (state["step"], name, incomplete) == (40, "checkpoint_00000040", ["checkpoint_00000060"])


def test_orphans_are_pruned_once_out_of_the_newest_k(tmp_path: Path) -> None:
    orphan = _checkpoint(tmp_path, 40)  # resumed from, never registered by Ray
    _checkpoint(tmp_path, 60)
    assert checkpoints.prune_orphans(str(tmp_path), [orphan], keep=2) == [orphan]
    assert (tmp_path / orphan).is_dir()
    _checkpoint(tmp_path, 80)
    assert checkpoints.prune_orphans(str(tmp_path), [orphan], keep=2) == []
    assert not (tmp_path / orphan).exists()
    assert [step for step, _ in checkpoints.checkpoint_steps(str(tmp_path))] == [80, 60]


def test_the_best_copy_replaces_the_previous_best(tmp_path: Path) -> None:
    for step, accuracy in ((20, 0.8), (40, 0.9)):
        local = tmp_path / "local" / str(step)
        local.mkdir(parents=True)
        checkpoints.save_state(
            str(local), {"step": step}, extra={"metrics": {"val_accuracy": accuracy}}
        )
        checkpoints.keep_best(str(tmp_path / "run"), str(local), step)
    best = checkpoints.best_checkpoints(str(tmp_path / "run"))
    assert [(Path(path).name, m["val_accuracy"]) for path, m in best] == [
        ("checkpoint_00000040", 0.9)
    ]
