"""The per-worker training loop that Ray Train runs on every rank."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from raylift.artifacts import checkpoints, sealed
from raylift.data.base import PreparedData
from raylift.errors import CheckpointError
from raylift.training.checkpointing import agree_on, rng_states, set_rng_states
from raylift.training.evaluate import evaluate
from raylift.training.interrupts import InterruptCheck, release_sigterm, sigterm_received
from raylift.training.plan import SampleStream, StepPlan
from raylift.training.setup import WorkerSetup, build_worker
from raylift.training.sharding import local_state_bytes, no_sync
from raylift.training.telemetry import peak_memory, start_gpu_sampler

# Chaos testing: the driver reads this and rank 0 raises once at that step, in an
# attempt that did not resume from a checkpoint (so a restart gets past it).
FAULT_ENV = "RAYLIFT_FAULT_AT_STEP"


@dataclass
class LoopState:
    step: int = 0  # optimizer steps completed
    samples_seen: int = 0
    restarts: int = 0
    train_time_s: float = 0.0  # wall time in this attempt's loop, less validation/checkpoints
    resumed_from_step: int | None = None  # set in an attempt that resumed
    world_size_before: int = 0  # workers of the attempt that wrote that checkpoint
    # Checkpoints on storage that Ray never registered (so Ray will not prune them).
    orphans: list[str] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"value", "step"} of the kept best checkpoint
    # Folders Ray registered that no longer verify (lost or damaged on storage after
    # Ray took them): Ray will prune them later, so no new checkpoint may be written
    # under one of these names (Ray's pruning would delete it).
    unusable: list[str] = field(default_factory=list)
    # Where this attempt's start-up went (seconds), reported with its first step.
    startup: dict[str, float] = field(default_factory=dict)
    # Tells attempts apart in the reports (two restarts from the same checkpoint
    # carry the same ``restarts`` count).
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point given to ``TorchTrainer``; ``config["spec"]`` is the job spec JSON."""
    import ray
    import ray.train

    entered = time.time()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # The driver loaded the data once (Ray Data reads need free CPUs, which the
    # workers hold) and put it in the object store; every worker gets it from there.
    data = ray.get(config["data_ref"])
    setup = build_worker(config["spec"], data, rank=rank, world_size=world)
    state = LoopState()
    built = time.time()
    registered = ray.train.get_checkpoint()
    registered_name = os.path.basename(registered.path.rstrip("/")) if registered else None
    restored = _resume_state(setup.spec, registered_name, rank, state)
    if restored is not None:
        _restore(setup, restored, state)
        if config.get("reset_hparams"):
            _apply_spec_hparams(setup)
    state.startup = {
        "startup_process_s": entered - _process_start_time(),
        "startup_setup_s": built - entered,
        "startup_restore_s": time.time() - built,
    }
    fault_at = int(config.get("fault_at_step", -1))
    setup.gpu_sampler = start_gpu_sampler(setup.spec["name"], rank, setup.device)
    _run(
        setup,
        state,
        rank,
        world,
        resumed=restored is not None,
        fault_at=fault_at,
        stop_key=config.get("stop_key"),
    )


def _resume_state(
    spec: dict[str, Any], registered: str | None, rank: int, loop: LoopState
) -> dict[str, Any] | None:
    """The newest complete checkpoint's state (all ranks agree), or None on a fresh start.

    Ray's own latest checkpoint (``registered``) can be older than the newest on
    storage (reported just before a failure, before the controller registered
    it), so look at storage. Rank 0 deletes half-written folders newer than the
    one chosen that Ray does not know, keeps those Ray registered (Ray prunes them;
    their names are not reused), and remembers a chosen folder Ray does not know
    as an orphan to prune later (Ray only prunes what it registered).
    """
    run_dir = _run_dir(spec)
    name = None
    state = None
    if rank == 0 and (registered or checkpoints.checkpoint_steps(run_dir)):
        found = checkpoints.load_newest_complete(run_dir)
        if found is not None:
            state, name, incomplete = found
            # Only folders newer than Ray's latest are unknown to Ray; deleting or
            # pruning one Ray registered would break its own pruning and snapshot.
            newest_registered = checkpoints.step_of(registered) if registered else -1
            for folder in incomplete:
                if checkpoints.step_of(folder) > newest_registered:
                    checkpoints.remove_checkpoint(run_dir, folder)
                else:
                    loop.unusable.append(folder)
            loop.orphans = [o for o in state.get("orphans", []) if o != name]
            if checkpoints.step_of(name) > newest_registered:
                loop.orphans.append(name)
    name = agree_on(name)
    if name is None:
        return None
    state = state if state is not None else checkpoints.load_named(run_dir, name)
    return {**state, "folder": name}


def _process_start_time() -> float:
    """When this worker process started (Ray starts a new one per attempt)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:
        return time.time()


def _run_dir(spec: dict[str, Any]) -> str:
    return spec["storage"]["path"].rstrip("/") + "/" + spec["name"]


def _restore(setup: WorkerSetup, restored: dict[str, Any], state: LoopState) -> None:
    if bool(restored.get("sharded")) != setup.sharded:
        raise CheckpointError(
            f"checkpoint {restored.get('folder')} was written with "
            f"strategy {'fsdp' if restored.get('sharded') else 'ddp'}; resume with the same "
            "scaling.strategy"
        )
    if setup.sharded:  # every rank reads its shards, at whatever world size this is
        from raylift.training.sharding import load_sharded

        with checkpoints.local_folder(_run_dir(setup.spec), restored["folder"]) as folder:
            load_sharded(folder, setup.unwrapped, setup.optimizer)
    else:
        setup.unwrapped.load_state_dict(restored["model"])
        setup.optimizer.load_state_dict(restored["optimizer"])
    setup.scheduler.load_state_dict(restored["scheduler"])
    if setup.scaler is not None and "scaler" in restored:
        setup.scaler.load_state_dict(restored["scaler"])
    set_rng_states(restored["rng"])
    state.step = int(restored["step"])
    state.samples_seen = int(restored["samples_seen"])
    state.restarts = int(restored.get("restarts", 0)) + 1
    state.resumed_from_step = state.step
    state.world_size_before = int(restored.get("world_size", 0))
    state.best = restored.get("best")


def _apply_spec_hparams(setup: WorkerSetup) -> None:
    """After restoring another run's state: this spec's lr and weight decay win."""
    train = setup.spec["train"]
    scheduler = setup.scheduler
    scheduler.base_lrs = [float(train["lr"]) for _ in scheduler.base_lrs]
    for group, lr in zip(
        setup.optimizer.param_groups,
        [
            base * lam(scheduler.last_epoch)
            for base, lam in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
        ],
        strict=True,
    ):
        group["initial_lr"] = float(train["lr"])
        group["lr"] = lr
        group["weight_decay"] = float(train["weight_decay"])
        if "momentum" in group and train.get("momentum") is not None:
            group["momentum"] = float(train["momentum"])


def _run(
    setup: WorkerSetup,
    state: LoopState,
    rank: int,
    world: int,
    *,
    resumed: bool,
    fault_at: int,
    stop_key: str | None = None,
) -> None:
    import ray.train

    spec, plan, data = setup.spec, setup.plan, setup.data
    train = spec["train"]
    stream = SampleStream(plan.num_train, train["seed"])
    window_start, window_samples = time.perf_counter(), 0
    window_loss, window_loss_n = 0.0, 0
    total = plan.total_steps
    attempt_start, excluded_s = time.perf_counter(), 0.0
    preemption = InterruptCheck(
        rank, setup.plan.world_size, start_step=state.step, stop_key=stop_key
    )
    first_step = True  # report the first step of a resumed attempt at once
    first_report = True  # carries the attempt's start-up timings
    while state.step < total:
        step, before = state.step, state.samples_seen
        if step == fault_at and not resumed and rank == 0:
            raise RuntimeError(f"{FAULT_ENV}={fault_at}: injected failure at step {step}")
        torch.manual_seed(train["seed"] * 7919 + rank * 104_729 + step)
        loss = _optimizer_step(setup, plan, data, stream, before, rank)
        state.step += 1
        state.samples_seen += plan.global_batch
        window_samples += plan.global_batch
        window_loss += loss
        window_loss_n += 1
        epoch_done = plan.epoch_at(state.samples_seen) > plan.epoch_at(before)
        periodic = _should_checkpoint(train, plan, state, epoch_done, total)
        early = preemption.due(state.step)  # "sigterm" / "preemption": checkpoint now
        checkpoint_now = periodic or early is not None
        report_now = state.step % train["log_every_steps"] == 0 or (first_step and resumed)
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
                _report_checkpoint(setup, state, metrics, rank)
                excluded_s += time.perf_counter() - now
                if early == "sigterm" and sigterm_received():
                    _exit_after_sigterm(state.step)
                if early == "stop":
                    return
            else:
                ray.train.report(metrics)
            window_start, window_samples = time.perf_counter(), 0
            window_loss, window_loss_n = 0.0, 0


def _optimizer_step(
    setup: WorkerSetup,
    plan: StepPlan,
    data: PreparedData,
    stream: SampleStream,
    samples_seen: int,
    rank: int,
) -> float:
    """One optimizer step over the global batch at ``samples_seen``; rank's mean loss."""
    model, optimizer = setup.forward_model, setup.optimizer
    model.train()
    accum = plan.accum_steps
    # DDP and FSDP average gradients over ranks, so scale each rank's summed per-sample
    # losses by world/global: the result is the mean over the whole global batch,
    # whatever the (possibly uneven) split into ranks and micro-batches.
    scale = plan.world_size / plan.global_batch
    loss_sum, count = 0.0, 0
    for micro in range(accum):
        indices = stream.indices(plan.micro_batch_positions(samples_seen, micro, rank))
        inputs = data.train_inputs[indices].to(setup.device, non_blocking=True)
        targets = data.train_targets[indices].to(setup.device, non_blocking=True)
        last = micro == accum - 1
        with contextlib.nullcontext() if last else no_sync(setup.model), setup.autocast():
            per_sample = setup.loss(model(inputs), targets)
            loss = per_sample.sum() * scale
        if setup.scaler is not None:
            setup.scaler.scale(loss).backward()
        else:
            loss.backward()
        loss_sum += float(per_sample.detach().sum())
        count += len(indices)
    grad_clip = setup.spec["train"]["grad_clip"]
    if setup.scaler is not None:
        setup.scaler.unscale_(optimizer)
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if setup.scaler is not None:
        setup.scaler.step(optimizer)
        setup.scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    setup.scheduler.step()
    return loss_sum / max(count, 1)


def _should_checkpoint(
    train: dict[str, Any], plan: StepPlan, state: LoopState, epoch_done: bool, total: int
) -> bool:
    if state.step == total:
        return True
    every_steps = train["checkpoint_every_steps"]
    if every_steps and state.step % every_steps == 0:
        return True
    every_epochs = train["checkpoint_every_epochs"]
    finished_epochs = plan.epoch_at(state.samples_seen)
    return bool(every_epochs and epoch_done and finished_epochs % every_epochs == 0)


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
        metrics["tokens_per_s"] = samples_per_s * setup.info.input_shape[0]
    return metrics


def _report_checkpoint(
    setup: WorkerSetup, state: LoopState, metrics: dict[str, Any], rank: int
) -> None:
    """Write, seal and report a checkpoint. DDP: rank 0 writes the whole state.
    FSDP: every rank writes its shards (torch.distributed.checkpoint) into its own
    folder and Ray uploads them all into one; rank 0 adds ``state.pt`` (step, RNG,
    schedule...) and the manifest listing every rank's files, written last."""
    import ray.train

    name = checkpoints.checkpoint_dir_name(state.step)
    writes = rank == 0 and name not in state.unusable  # rank 0 knows what Ray prunes
    if setup.sharded:
        writes = bool(agree_on(writes))
    with tempfile.TemporaryDirectory(prefix="raylift-ckpt-") as directory:
        checkpoint = None
        better = False
        if writes:
            started = time.perf_counter()
            other_files = _write_shards(setup, directory, rank) if setup.sharded else None
            if rank == 0:
                train = setup.spec["train"]
                better = _improves_best(train, state, metrics)
                if better:
                    state.best = {"value": float(metrics[train["metric"]]), "step": state.step}
                payload = _state_payload(setup, state, metrics)
                checkpoints.save_state(
                    directory,
                    payload,
                    extra={"step": state.step, "metrics": metrics},
                    other_files=other_files,
                )
                metrics["checkpoint_s"] = time.perf_counter() - started
                others = sum(f["bytes"] for f in (other_files or {}).values())
                metrics["checkpoint_bytes"] = sealed.size_bytes(directory) + others
                if better and not setup.sharded:
                    checkpoints.keep_best(_run_dir(setup.spec), directory, state.step)
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
    if setup.sharded and writes:
        # Every rank's upload is done once all have passed report(): only then is
        # the folder on storage complete enough to copy as the best one.
        _barrier()
        if rank == 0 and better:
            checkpoints.keep_best_from_storage(_run_dir(setup.spec), name, state.step)
    if rank == 0 and state.orphans:
        state.orphans = checkpoints.prune_orphans(
            _run_dir(setup.spec), state.orphans, setup.spec["train"]["keep_checkpoints"]
        )


def _state_payload(setup: WorkerSetup, state: LoopState, metrics: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's ``state.pt``: everything but the sharded model/optimizer under FSDP."""
    payload: dict[str, Any] = {
        "scheduler": setup.scheduler.state_dict(),
        "step": state.step,
        "epoch": metrics["epoch"],
        "samples_seen": state.samples_seen,
        "restarts": state.restarts,
        "world_size": setup.plan.world_size,
        "rng": rng_states(),
        "spec": json.dumps(setup.spec),
        "metrics": json.dumps(metrics),
        "orphans": list(state.orphans),
        "best": state.best,
        "sharded": setup.sharded,
    }
    if not setup.sharded:
        payload["model"] = setup.unwrapped.state_dict()
        payload["optimizer"] = setup.optimizer.state_dict()
    if setup.scaler is not None:
        payload["scaler"] = setup.scaler.state_dict()
    return payload


def _write_shards(setup: WorkerSetup, directory: str, rank: int) -> dict[str, Any]:
    """This rank's shards into ``directory``; on rank 0, every other rank's file digests."""
    import torch.distributed as dist

    from raylift.training.sharding import save_sharded

    save_sharded(directory, setup.unwrapped, setup.optimizer)
    mine = sealed.file_digests(directory)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return {}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    if rank != 0:
        return {}
    return {rel: d for other in gathered[1:] for rel, d in other.items()}


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _improves_best(train: dict[str, Any], state: LoopState, metrics: dict[str, Any]) -> bool:
    """Whether this checkpoint beats the kept best by ``train.metric`` (and one is kept)."""
    metric = train.get("metric")
    if not train.get("keep_best") or metric not in metrics:
        return False
    if state.best is None:
        return True
    value, best = float(metrics[metric]), float(state.best["value"])
    return value > best if train.get("mode") == "max" else value < best


def _exit_after_sigterm(step: int) -> None:
    """The checkpoint is on storage: let the SIGTERM end this worker process.

    First give the controller a moment to take the report (it polls every
    0.5 s), so Ray registers the checkpoint and the driver sees it.
    """
    with contextlib.suppress(Exception):  # private Ray internals: best effort
        from ray.train.v2._internal.execution.context import get_train_context

        reports = get_train_context().execution_context.result_queue
        deadline = time.monotonic() + 5.0
        while reports.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
    release_sigterm()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        time.sleep(0.1)  # the main thread exits the process at its next task
    raise RuntimeError(f"SIGTERM: checkpointed at step {step}; stopping this worker")
