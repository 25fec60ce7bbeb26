"""The per-worker training loop that Ray Train runs on every rank."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch

from raylift.specs.resolve import ResolvedJob
from raylift.training.checkpointing import CheckpointManager
from raylift.training.evaluate import evaluate
from raylift.training.flops import mfu
from raylift.training.interrupts import InterruptCheck, exit_after_sigterm, sigterm_received
from raylift.training.plan import SampleStream
from raylift.training.setup import WorkerSetup, apply_job_hparams, build_worker
from raylift.training.sharding import local_state_bytes
from raylift.training.step import optimizer_step
from raylift.training.telemetry import peak_memory, start_gpu_sampler

# Chaos testing: the driver reads this and rank 0 raises once at that step, in an
# attempt that did not resume from a checkpoint (so a restart gets past it).
FAULT_ENV = "RAYLIFT_FAULT_AT_STEP"


@dataclass(frozen=True)
class WorkerConfig:
    """What the driver hands every worker (Ray's ``train_loop_config["worker"]``)."""

    job: ResolvedJob
    data_ref: Any  # ray.ObjectRef of the PreparedData
    fault_at_step: int = -1
    stop_key: str | None = None  # see interrupts.StopOnSigterm
    reset_hparams: bool = False  # after restoring another run's state: this job's lr wins


@dataclass
class LoopState:
    step: int = 0  # optimizer steps completed
    samples_seen: int = 0
    restarts: int = 0
    train_time_s: float = 0.0  # wall time in this attempt's loop, less validation/checkpoints
    resumed_from_step: int | None = None  # set in an attempt that resumed
    world_size_before: int = 0  # workers of the attempt that wrote that checkpoint
    # Where this attempt's start-up went (seconds), reported with its first step.
    startup: dict[str, float] = field(default_factory=dict)
    # Tells attempts apart in the reports (two restarts from the same checkpoint
    # carry the same ``restarts`` count).
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point given to ``TorchTrainer``; ``config["worker"]`` is a WorkerConfig."""
    import ray
    import ray.train
    import ray.train.torch

    entered = time.time()
    worker: WorkerConfig = config["worker"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # The driver loaded the data once (Ray Data reads need free CPUs, which the
    # workers hold) and put it in the object store; every worker gets it from there.
    data = ray.get(worker.data_ref)
    setup = build_worker(
        worker.job, data, rank=rank, world_size=world, device=ray.train.torch.get_device()
    )
    checkpointer = CheckpointManager(worker.job, rank)
    state = LoopState()
    built = time.time()
    registered = ray.train.get_checkpoint()
    registered_name = os.path.basename(registered.path.rstrip("/")) if registered else None
    resumed = checkpointer.restore(setup, registered_name)
    if resumed is not None:
        state.step = state.resumed_from_step = resumed.step
        state.samples_seen = resumed.samples_seen
        state.restarts = resumed.restarts + 1
        state.world_size_before = resumed.world_size
        if worker.reset_hparams:
            apply_job_hparams(setup)
    state.startup = {
        "startup_process_s": entered - _process_start_time(),
        "startup_setup_s": built - entered,
        "startup_restore_s": time.time() - built,
    }
    setup.gpu_sampler = start_gpu_sampler(worker.job.name, rank, setup.device)
    _run(
        setup,
        state,
        checkpointer,
        rank,
        world,
        resumed=resumed is not None,
        fault_at=worker.fault_at_step,
        stop_key=worker.stop_key,
    )


def _process_start_time() -> float:
    """When this worker process started (Ray starts a new one per attempt)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:
        return time.time()


def _run(
    setup: WorkerSetup,
    state: LoopState,
    checkpointer: CheckpointManager,
    rank: int,
    world: int,
    *,
    resumed: bool,
    fault_at: int,
    stop_key: str | None = None,
) -> None:
    import ray.train

    plan, train = setup.plan, setup.job.train
    stream = SampleStream(plan.num_train, train.seed)
    window_start, window_samples = time.perf_counter(), 0
    window_loss, window_loss_n = 0.0, 0
    total = plan.total_steps
    attempt_start, excluded_s = time.perf_counter(), 0.0
    interrupts = InterruptCheck(
        rank, setup.plan.world_size, start_step=state.step, stop_key=stop_key
    )
    first_step = True  # report the first step of a resumed attempt at once
    first_report = True  # carries the attempt's start-up timings
    while state.step < total:
        step, before = state.step, state.samples_seen
        if step == fault_at and not resumed and rank == 0:
            raise RuntimeError(f"{FAULT_ENV}={fault_at}: injected failure at step {step}")
        torch.manual_seed(train.seed * 7919 + rank * 104_729 + step)
        loss = optimizer_step(setup, stream, before, rank)
        state.step += 1
        state.samples_seen += plan.global_batch
        window_samples += plan.global_batch
        window_loss += loss
        window_loss_n += 1
        epoch_done = plan.epoch_at(state.samples_seen) > plan.epoch_at(before)
        periodic = checkpointer.due(state.step, total, plan, epoch_done, state.samples_seen)
        early = interrupts.due(state.step)  # stop, sigterm, resize or preemption: checkpoint now
        checkpoint_now = periodic or early is not None
        report_now = state.step % train.log_every_steps == 0 or (first_step and resumed)
        first_step = False
        if checkpoint_now or report_now:
            now = time.perf_counter()
            state.train_time_s = now - attempt_start - excluded_s
            samples_per_s = window_samples / max(now - window_start, 1e-9)
            metrics = _progress_metrics(
                setup, state, plan.epoch_at(before), window_loss / window_loss_n, samples_per_s
            )
            if first_report:
                metrics.update(state.startup)
                first_report = False
            if checkpoint_now:
                if periodic:
                    metrics.update(evaluate(setup, rank, world))
                    metrics.update(setup.baselines)
                if early is not None:  # unscheduled: skip validation, be quick
                    metrics["checkpoint_reason"] = early
                checkpointer.save(
                    setup,
                    metrics,
                    step=state.step,
                    samples_seen=state.samples_seen,
                    restarts=state.restarts,
                )
                excluded_s += time.perf_counter() - now
                if early == "sigterm" and sigterm_received():
                    exit_after_sigterm(state.step)
                if early == "stop":
                    return
            else:
                ray.train.report(metrics)
            window_start, window_samples = time.perf_counter(), 0
            window_loss, window_loss_n = 0.0, 0


def _progress_metrics(
    setup: WorkerSetup, state: LoopState, epoch: int, loss: float, samples_per_s: float
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "step": state.step,
        "total_steps": setup.plan.total_steps,
        "epoch": epoch + 1,
        "train_loss": loss,
        "lr": setup.scheduler.get_last_lr()[0],
        "samples_per_s": samples_per_s,
        "world_size": setup.plan.world_size,
        "global_batch": setup.plan.global_batch,
        "samples_seen": state.samples_seen,
        "restarts": state.restarts,
        "train_time_s": state.train_time_s,
        "accum_steps": setup.plan.accum_steps,
        "attempt": state.attempt,
        "step_end_time": time.time(),  # wall clock: lets monitors and benchmarks time steps
        **peak_memory(setup.device),
        # Parameters + optimizer state this rank holds (its shards under FSDP).
        "model_state_bytes": local_state_bytes(setup.unwrapped, setup.optimizer),
    }
    if state.resumed_from_step is not None:
        metrics["resumed_from_step"] = state.resumed_from_step
        metrics["world_size_before"] = state.world_size_before
    if setup.info.task == "language_modeling":
        tokens_per_s = samples_per_s * setup.info.input_shape[0]
        metrics["tokens_per_s"] = tokens_per_s
        utilisation = mfu(
            tokens_per_s, setup.flops_per_token or 0.0, setup.peak_flops, setup.plan.world_size
        )
        if utilisation is not None:
            metrics["mfu"] = utilisation
    return metrics
