"""training/checkpointing.py: the RNG states round-trip; the CheckpointManager's schedule,
restore after a crash, strategy check and best-by-objective."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from raylift.artifacts import checkpoints
from raylift.training.checkpointing import rng_states, set_rng_states


def test_rng_states_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    checkpoints.save_state(str(tmp_path), {"rng": rng_states()})
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(9)
    random.seed(9)
    np.random.seed(9)
    set_rng_states(checkpoints.load_state(str(tmp_path))["rng"])
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


# ---------------------------------------------------------------- CheckpointManager


def _job(tmp_path: Path, **train: object):  # type: ignore[no-untyped-def]
    from raylift.specs import spec_from_dict
    from raylift.specs.resolve import resolve

    spec = spec_from_dict(
        {
            "name": "ckpt-test",
            "model": {"name": "mlp", "params": {"hidden_sizes": [8]}},
            "data": {"name": "digits"},
            "train": {"epochs": 2, **train},
            "storage": {"path": str(tmp_path)},
        }
    )
    return resolve(spec).for_task("classification")


def _setup(job):  # type: ignore[no-untyped-def]
    """A WorkerSetup on one CPU process, without Ray Train (no DDP wrapper)."""
    from raylift.data.base import load_dataset
    from raylift.training.setup import (
        WorkerSetup,
        loss_for,
        make_model,
        make_optimizer,
        make_scheduler,
        step_plan,
    )

    data = load_dataset("digits", {}, val_fraction=0.2, seed=0)
    model = make_model(job, data.info)
    optimizer = make_optimizer(model, job.train)
    plan = step_plan(job, data, world_size=1)
    return WorkerSetup(
        job=job,
        plan=plan,
        data=data,
        model=model,
        unwrapped=model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, job.train, plan.total_steps, 1.0),
        scaler=None,
        device=torch.device("cpu"),
        loss=loss_for("classification"),
    )


def _write(setup, manager, step: int, *, sealed: bool = True) -> str:  # type: ignore[no-untyped-def]
    """A checkpoint folder as CheckpointManager.save lays it out (without Ray's upload)."""
    name = checkpoints.checkpoint_dir_name(step)
    folder = Path(manager.run_dir) / name
    payload = manager._payload(setup, {"epoch": 1, "val_accuracy": 0.5}, step, step * 10, 0)
    if sealed:
        checkpoints.save_state(str(folder), payload, extra={"step": step})
    else:  # a crash mid-write: no manifest
        folder.mkdir(parents=True)
        torch.save(payload, folder / checkpoints.STATE_FILE)
    return name


def test_due_follows_the_spec_schedule(tmp_path: Path) -> None:
    from raylift.training.checkpointing import CheckpointManager

    job = _job(tmp_path, checkpoint_every_steps=5, checkpoint_every_epochs=2)
    setup = _setup(job)
    manager, plan, total = CheckpointManager(job, 0), setup.plan, setup.plan.total_steps
    assert manager.due(total, total, plan, epoch_done=False, samples=0)  # the last step
    assert manager.due(5, total, plan, epoch_done=False, samples=0)
    assert not manager.due(6, total, plan, epoch_done=False, samples=0)
    one_epoch, two_epochs = plan.num_train, 2 * plan.num_train
    assert not manager.due(7, total, plan, epoch_done=True, samples=one_epoch)
    assert manager.due(7, total, plan, epoch_done=True, samples=two_epochs)


def test_restore_takes_the_newest_complete_and_cleans_up_after_a_crash(tmp_path: Path) -> None:
    from raylift.training.checkpointing import CheckpointManager

    job = _job(tmp_path)
    setup = _setup(job)
    writer = CheckpointManager(job, 0)
    assert writer.restore(setup, None) is None  # a fresh start
    _write(setup, writer, 10)
    setup.optimizer.param_groups[0]["lr"] = 0.123  # state written at step 20 only
    newest = _write(setup, writer, 20)
    registered_broken = _write(setup, writer, 30, sealed=False)  # Ray registered it, then lost
    unknown_broken = _write(setup, writer, 40, sealed=False)  # written during the crash
    manager = CheckpointManager(job, 0)
    resumed = manager.restore(_setup(job), registered_broken)
    assert resumed is not None and resumed.folder == newest
    assert (resumed.step, resumed.samples_seen, resumed.world_size) == (20, 200, 1)
    folders = {name for _, name in checkpoints.checkpoint_steps(job.run_dir)}
    assert unknown_broken not in folders  # Ray never knew it: deleted
    assert registered_broken in folders and manager.unusable == [registered_broken]
    assert manager.orphans == []  # the chosen one is older than Ray's latest: Ray knows it


def test_restore_refuses_a_checkpoint_of_the_other_strategy(tmp_path: Path) -> None:
    from raylift.errors import CheckpointError
    from raylift.training.checkpointing import CheckpointManager

    job = _job(tmp_path)
    setup = _setup(job)
    manager = CheckpointManager(job, 0)
    name = checkpoints.checkpoint_dir_name(5)
    payload = {**manager._payload(setup, {"epoch": 1}, 5, 50, 0), "sharded": True}
    checkpoints.save_state(str(Path(job.run_dir) / name), payload)
    with pytest.raises(CheckpointError, match="strategy fsdp; resume with the same"):
        CheckpointManager(job, 0).restore(setup, name)


def test_the_best_checkpoint_follows_the_objective(tmp_path: Path) -> None:
    from raylift.training.checkpointing import CheckpointManager

    accuracy = CheckpointManager(_job(tmp_path), 0)
    assert accuracy._improves_best({"val_accuracy": 0.5})  # nothing kept yet
    accuracy.best = {"value": 0.5, "step": 1}
    assert accuracy._improves_best({"val_accuracy": 0.6})
    assert not accuracy._improves_best({"val_accuracy": 0.4})
    assert not accuracy._improves_best({"val_loss": 0.1})  # no value of the metric
    loss = CheckpointManager(_job(tmp_path, metric="val_loss"), 0)
    loss.best = {"value": 0.5, "step": 1}
    assert loss._improves_best({"val_loss": 0.4}) and not loss._improves_best({"val_loss": 0.6})
    assert not CheckpointManager(_job(tmp_path, keep_best=False), 0)._improves_best(
        {"val_accuracy": 0.9}
    )
