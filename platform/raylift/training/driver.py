"""Running a job end to end on the driver: run folder, fit, export, run record."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Any

from raylift import storage
from raylift.artifacts.runs import RunRecord, now
from raylift.errors import JobStopped, SpecError, StorageError, TrainingError
from raylift.specs import JobSpec
from raylift.specs.resolve import Objective, ResolvedJob, resolve
from raylift.training.progress import EventHandler, clean_metrics, pump_progress, run_telemetry


@dataclass
class TrainOutcome:
    run_dir: str
    export_dir: str
    metrics: dict[str, Any]
    best_metrics: dict[str, Any]
    objective: Objective
    peak_memory: dict[str, Any] | None = None  # per worker, see RunRecord.peak_memory

    @property
    def metric(self) -> str:
        return self.objective.metric

    @property
    def mode(self) -> str:
        return self.objective.mode


def prepare_run_dir(job: ResolvedJob, *, resume: bool, overwrite: bool) -> RunRecord | None:
    """Refuse to clobber an existing run unless asked; returns its record on resume."""
    run_dir = job.run_dir
    exists = job.name in storage.list_dirs(job.storage.path)
    record = RunRecord.load(run_dir) if exists else None
    if resume:
        if not exists:
            raise StorageError(f"nothing to resume: no run {job.name!r} under {job.storage.path}")
        if record is not None:
            resolved = job.as_json()
            for key in ("model", "data", "finetune"):
                before, after = record.spec.get(key), resolved.get(key)
                if key in record.spec and before != after:
                    raise SpecError(
                        f"differs from the run being resumed ({run_dir}); resume with the same "
                        f"{key} section or start a new run name",
                        key=key,
                    )
            before = (record.spec.get("scaling") or {}).get("strategy", "ddp")
            if before != job.scaling.strategy:
                raise SpecError(
                    f"the run being resumed ({run_dir}) wrote {before} checkpoints; resume "
                    f"with scaling.strategy={before} or start a new run name",
                    key="scaling.strategy",
                )
        return record
    if exists:
        if not overwrite:
            raise StorageError(
                f"run {job.name!r} already exists under {job.storage.path}: pass --resume to "
                "continue it, --overwrite to replace it, or --set name=NEW"
            )
        storage.remove_dir(run_dir)
    return None


def run_training(
    spec: JobSpec,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_event: EventHandler | None = None,
    start_from: tuple[str, str] | None = None,
) -> TrainOutcome:
    """Fit ``spec`` on the connected Ray, export the best checkpoint, record the run.

    ``start_from``: (a local checkpoint folder of another run, where it came from):
    this run starts from it, with the spec's own optimizer hyperparameters (PBT's
    exploit step).
    """
    import ray
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from raylift.artifacts.checkpoints import step_of
    from raylift.training.interrupts import StopOnSigterm, new_key
    from raylift.training.progress import ProgressCallback
    from raylift.training.setup import check_model, load_data, plan_finetune
    from raylift.training.trainer import build_trainer, start_timeout

    job = resolve(spec)
    data = load_data(job)  # bad data or metric fails here, before the run folder is touched
    job = job.for_task(data.info.task)
    check_model(job, data.info)  # a model that does not fit the data: here, not in the workers
    objective = job.objective
    finetune = plan_finetune(job, data.info)  # and a finetune glob that matches nothing
    previous = prepare_run_dir(job, resume=resume, overwrite=overwrite)
    run_dir = job.run_dir
    record = RunRecord(
        name=job.name,
        status="running",
        started=previous.started if previous else now(),
        spec=job.as_json(),
        attempts=(previous.attempts + 1) if previous else 1,
        metrics=dict(previous.metrics) if previous else {},
        recoveries=list(previous.recoveries) if previous else [],
        started_from=previous.started_from if previous else None,
    )
    if start_from is not None:
        folder, source = start_from
        name = os.path.basename(folder.rstrip("/"))
        storage.upload_dir(folder, storage.join(run_dir, name))
        record.started_from = {"checkpoint": source, "step": step_of(name)}
    record.save(run_dir)
    if finetune is not None and on_event is not None:
        on_event({"finetune": finetune.describe(), **finetune.metrics()})

    # Pin the progress queue to the driver's node: on a worker node it would die
    # with that node, and the driver would go blind to a run that carries on.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    queue = Queue(maxsize=1000, actor_options={"num_cpus": 0, "scheduling_strategy": here})
    stop = threading.Event()
    pump = threading.Thread(
        target=pump_progress,
        args=(queue, stop, on_event, record, run_dir, run_telemetry(job)),
        daemon=True,
    )
    pump.start()
    stopper = StopOnSigterm(new_key(job.name))
    trainer = build_trainer(
        job,
        ray.put(data),
        callbacks=[ProgressCallback(queue)],
        stop_key=stopper.key,
        reset_hparams=start_from is not None,
    )
    try:
        with start_timeout(job), stopper.installed():
            result = trainer.fit()
    except KeyboardInterrupt:
        record.status, record.finished = "stopped", now()
        record.save(run_dir)
        raise
    except Exception as exc:
        record.status, record.finished, record.error = "failed", now(), _summarise(exc)
        record.save(run_dir)
        raise TrainingError(f"run {job.name!r} failed: {record.error}") from exc
    finally:
        stop.set()
        pump.join(timeout=30)
        _shutdown_queue(queue)
    if stopper.requested:
        record.status, record.finished = "stopped", now()
        record.metrics = clean_metrics(result.metrics or {})
        record.save(run_dir)
        step = (result.metrics or {}).get("step")
        raise JobStopped(
            f"run {job.name!r} stopped at step {step} after a checkpoint; "
            "continue it with `raylift train FILE --resume`"
        )

    best = _best_checkpoint(result, run_dir, objective)
    if best is None:
        raise TrainingError(f"run {job.name!r} finished without a checkpoint to export")
    checkpoint, best_metrics = best
    from raylift.training.exporting import export_from_checkpoint

    export_dir = storage.join(run_dir, "model")
    with checkpoint.as_directory() as local:
        export_from_checkpoint(local, export_dir, data)
    record.status, record.finished = "succeeded", now()
    record.metrics = clean_metrics(result.metrics or {})
    record.best_metric = {
        "name": objective.metric,
        "mode": objective.mode,
        "value": best_metrics.get(objective.metric),
        "step": best_metrics.get("step"),
    }
    record.export = export_dir
    record.save(run_dir)
    return TrainOutcome(
        run_dir,
        export_dir,
        record.metrics,
        clean_metrics(best_metrics),
        objective,
        record.peak_memory,
    )


def _best_checkpoint(
    result: Any, run_dir: str, objective: Objective
) -> tuple[Any, dict[str, Any]] | None:
    """The best by the objective of Ray's kept checkpoints and the copy under best/."""
    from ray.train import Checkpoint

    from raylift.artifacts.checkpoints import best_checkpoints, newest_complete_checkpoint

    metric = objective.metric
    kept = [(Checkpoint(path), metrics) for path, metrics in best_checkpoints(run_dir)]
    scored = [(c, m) for c, m in [*(result.best_checkpoints or []), *kept] if metric in m]
    if not scored:
        if result.checkpoint:
            return result.checkpoint, dict(result.metrics or {})
        # Nothing reported in this attempt (it resumed at its last step, e.g. from a
        # checkpoint another run handed over): the newest complete one on storage.
        newest = newest_complete_checkpoint(run_dir)
        return (Checkpoint(newest[0]), newest[1]) if newest else None
    return max(
        scored, key=lambda pair: (objective.score(float(pair[1][metric])), pair[1].get("step", 0))
    )


def _shutdown_queue(queue: Any) -> None:
    with contextlib.suppress(Exception):
        queue.shutdown(force=True)


def _summarise(exc: BaseException) -> str:
    failures = getattr(exc, "worker_failures", None)
    if failures:
        rank, error = sorted(failures.items())[0]
        return f"worker {rank}: {type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1][:300] if text else ''}"
