"""trainer.py: a resolved job -> Ray Train's TorchTrainer (built, not fitted)."""

from __future__ import annotations

import os

import pytest

from raylift.specs import spec_from_dict
from raylift.specs.resolve import resolve


def _job(min_workers: int, max_workers: int):  # type: ignore[no-untyped-def]
    spec = spec_from_dict(
        {
            "name": "trainer-test",
            "model": {"name": "mlp"},
            "data": {"name": "digits"},
            "scaling": {"min_workers": min_workers, "max_workers": max_workers},
            "failure": {"max_failures": 2},
        }
    )
    return resolve(spec).for_task("classification")


def test_the_trainer_carries_the_typed_job_and_the_specs_settings() -> None:
    from ray.train.torch import TorchTrainer

    from raylift.training.loop import WorkerConfig
    from raylift.training.trainer import build_trainer

    job = _job(1, 2)
    trainer = build_trainer(job, data_ref=None, stop_key="stop/x")
    assert isinstance(trainer, TorchTrainer)
    worker = trainer.train_loop_config["worker"]
    assert isinstance(worker, WorkerConfig) and worker.job == job and worker.stop_key == "stop/x"
    assert trainer.scaling_config.num_workers == (1, 2)
    assert trainer.run_config.failure_config.max_failures == 2
    assert trainer.run_config.checkpoint_config.num_to_keep == job.train.keep_checkpoints


def test_elastic_runs_get_a_short_worker_group_start_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from raylift.training.trainer import ELASTIC_START_TIMEOUT_S, START_TIMEOUT_ENV, start_timeout

    monkeypatch.delenv(START_TIMEOUT_ENV, raising=False)
    with start_timeout(_job(1, 2)):
        assert os.environ[START_TIMEOUT_ENV] == ELASTIC_START_TIMEOUT_S
    assert START_TIMEOUT_ENV not in os.environ
    with start_timeout(_job(2, 2)):  # fixed size: Ray's default
        assert START_TIMEOUT_ENV not in os.environ
    monkeypatch.setenv(START_TIMEOUT_ENV, "30")  # the user's own setting wins
    with start_timeout(_job(1, 2)):
        assert os.environ[START_TIMEOUT_ENV] == "30"
