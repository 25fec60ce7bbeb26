"""A resolved job -> Ray Train's ``TorchTrainer`` (Train V2)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from raylift.ray_compat.trainer import trainer_without_datasets_callback
from raylift.specs.resolve import ResolvedJob

# A (re)start waits this long for its placement group before Train tries again,
# re-sized (Ray: 60 s). An elastic restart is sized from a fresh view of the
# cluster (recovery.py) and a placement group that fits is ready in well under
# a second, so a long wait only happens when a node died so recently that the
# GCS still counts it: 5 s bounds that cost. Timeouts are retried without
# counting as failures. Fixed-size runs keep Ray's default (they may be waiting
# for an autoscaler to add nodes).
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
ELASTIC_START_TIMEOUT_S = "5"


def build_trainer(
    job: ResolvedJob,
    data_ref: Any,
    *,
    callbacks: list[Any] | None = None,
    stop_key: str | None = None,
    reset_hparams: bool = False,
) -> Any:
    """The TorchTrainer for ``job``; ``stop_key``: see ``interrupts.StopOnSigterm``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from raylift.training.interrupts import SigtermCheckpoint
    from raylift.training.loop import FAULT_ENV, WorkerConfig, train_loop_per_worker
    from raylift.training.recovery import ElasticRecovery

    scaling = job.scaling
    resources = scaling.resources_per_worker
    if resources is None:
        resources = {"CPU": 1, "GPU": 1} if scaling.use_gpu else {"CPU": 1}
    worker = WorkerConfig(
        job=job,
        data_ref=data_ref,
        fault_at_step=int(os.environ.get(FAULT_ENV, -1)),
        stop_key=stop_key,
        reset_hparams=reset_hparams,
    )
    return trainer_without_datasets_callback()(
        train_loop_per_worker,
        train_loop_config={"worker": worker},
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker=resources,
            elastic_resize_monitor_interval_s=scaling.resize_check_interval_s,
        ),
        run_config=RunConfig(
            name=job.name,
            storage_path=job.storage.path,
            failure_config=FailureConfig(
                max_failures=job.failure.max_failures,
                max_preemption_failures=job.failure.max_preemptions,
            ),
            # Ray keeps the K newest (scored by step) and prunes the rest; the
            # CheckpointManager prunes the ones Ray never registered and keeps the
            # best under best/.
            checkpoint_config=CheckpointConfig(
                num_to_keep=job.train.keep_checkpoints,
                checkpoint_score_attribute="step",
                checkpoint_score_order="max",
            ),
            callbacks=[ElasticRecovery(), SigtermCheckpoint(), *(callbacks or [])],
        ),
    )


@contextlib.contextmanager
def start_timeout(job: ResolvedJob) -> Iterator[None]:
    """Elastic runs: a short worker-group start timeout, unless the user set one.

    Train copies ``RAY_TRAIN_*`` variables from this process when ``fit()`` starts.
    """
    if not job.elastic or START_TIMEOUT_ENV in os.environ:
        yield
        return
    os.environ[START_TIMEOUT_ENV] = ELASTIC_START_TIMEOUT_S
    try:
        yield
    finally:
        os.environ.pop(START_TIMEOUT_ENV, None)
