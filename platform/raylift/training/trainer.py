"""Job spec -> Ray Train ``TorchTrainer``, and running a job end to end."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from raylift import storage
from raylift.artifacts.runs import MetricsHistory, RunRecord, now
from raylift.errors import JobStopped, SpecError, StorageError, TrainingError
from raylift.specs import JobSpec

EventHandler = Callable[[dict[str, Any]], None]

# A (re)start waits this long for its placement group before Train tries again,
# re-sized (Ray: 60 s). An elastic restart is sized from a fresh view of the
# cluster (recovery.py) and a placement group that fits is ready in well under
# a second, so a long wait only happens when a node died so recently that the
# GCS still counts it: 5 s bounds that cost. Timeouts are retried without
# counting as failures. Fixed-size runs keep Ray's default (they may be waiting
# for an autoscaler to add nodes).
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
ELASTIC_START_TIMEOUT_S = "5"


def metric_and_mode(spec: JobSpec, task: str) -> tuple[str, str]:
    """The metric that picks the best checkpoint, and whether high is better."""
    from raylift.specs.job import METRICS

    if spec.train.metric:
        metric = spec.train.metric
        if METRICS[metric] not in (None, task):
            raise SpecError(
                f"{metric} is not reported for {task} data; use val_loss or a {task} metric",
                key="train.metric",
            )
        mode = spec.train.mode or ("max" if "accuracy" in metric else "min")
        return metric, mode
    if task == "classification":
        return "val_accuracy", "max"
    return "val_loss", "min"


def resolve_spec(spec: JobSpec) -> dict[str, Any]:
    """The spec as the workers get it: model filled in from ``init_from`` if omitted."""
    resolved = spec.model_dump(mode="json")
    resolved["init_from"] = spec.init_from_path
    from raylift.data import DATASETS
    from raylift.models import MODELS

    # Full params (defaults included) so the export describes itself and runs compare.
    params = DATASETS.parse_params(spec.data.name, spec.data.params).with_absolute_paths()
    resolved["data"]["params"] = params.model_dump(mode="json")
    if spec.model is not None and spec.model.name is not None:
        model_params = MODELS.parse_params(spec.model.name, spec.model.params)
        resolved["model"]["params"] = model_params.model_dump(mode="json")
    if spec.model is None and spec.init_from_path:
        from raylift.artifacts.export import local_copy, read_manifest

        with local_copy(spec.init_from_path) as local:
            resolved["model"] = read_manifest(local)["model"]
    return resolved


def build_trainer(
    spec: JobSpec,
    resolved: dict[str, Any],
    data_ref: Any,
    *,
    callbacks: list[Any] | None = None,
    stop_key: str | None = None,
    reset_hparams: bool = False,
) -> Any:
    """The TorchTrainer for ``spec`` (Train V2); ``stop_key``: see ``interrupts.py``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from raylift.training.interrupts import SigtermCheckpoint
    from raylift.training.loop import FAULT_ENV, train_loop_per_worker
    from raylift.training.recovery import ElasticRecovery

    scaling = spec.scaling
    resources = scaling.resources_per_worker
    if resources is None:
        resources = {"CPU": 1, "GPU": 1} if scaling.use_gpu else {"CPU": 1}
    return _trainer_class()(
        train_loop_per_worker,
        train_loop_config={
            "spec": resolved,
            "data_ref": data_ref,
            "fault_at_step": int(os.environ.get(FAULT_ENV, -1)),
            "stop_key": stop_key,
            "reset_hparams": reset_hparams,
        },
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker=resources,
            elastic_resize_monitor_interval_s=scaling.resize_check_interval_s,
        ),
        run_config=RunConfig(
            name=spec.name,
            storage_path=spec.storage.path,
            failure_config=FailureConfig(
                max_failures=spec.failure.max_failures,
                max_preemption_failures=spec.failure.max_preemptions,
            ),
            # Ray keeps the K newest (scored by step) and prunes the rest; the loop
            # prunes the ones Ray never registered and keeps the best under best/.
            checkpoint_config=CheckpointConfig(
                num_to_keep=spec.train.keep_checkpoints,
                checkpoint_score_attribute="step",
                checkpoint_score_order="max",
            ),
            callbacks=[ElasticRecovery(), SigtermCheckpoint(), *(callbacks or [])],
        ),
    )


@functools.cache
def _trainer_class() -> type:
    """``TorchTrainer`` less the Ray Data plumbing that raylift never uses.

    Train V2 starts a ``DatasetManager`` actor (a new process importing Ray Data)
    at every worker-group start, datasets or not; on a restart it competes for CPU
    with the new workers. raylift hands data to the workers through the object
    store, so a trainer given no ``datasets`` drops that callback.
    """
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            callbacks = super()._create_default_callbacks()
            if self.datasets:
                return callbacks
            return [c for c in callbacks if not isinstance(c, DatasetsCallback)]

    return Trainer


@dataclass
class TrainOutcome:
    run_dir: str
    export_dir: str
    metrics: dict[str, Any]
    best_metrics: dict[str, Any]
    metric: str
    mode: str
    peak_memory: dict[str, Any] | None = None  # per worker, see RunRecord.peak_memory


def prepare_run_dir(
    spec: JobSpec, resolved: dict[str, Any], *, resume: bool, overwrite: bool
) -> RunRecord | None:
    """Refuse to clobber an existing run unless asked; returns its record on resume."""
    run_dir = spec.run_dir
    exists = spec.name in storage.list_dirs(spec.storage.path)
    record = RunRecord.load(run_dir) if exists else None
    if resume:
        if not exists:
            raise StorageError(f"nothing to resume: no run {spec.name!r} under {spec.storage.path}")
        if record is not None:
            for key in ("model", "data", "finetune"):
                before, after = record.spec.get(key), resolved.get(key)
                if key in record.spec and before != after:
                    raise SpecError(
                        f"differs from the run being resumed ({run_dir}); resume with the same "
                        f"{key} section or start a new run name",
                        key=key,
                    )
            before = (record.spec.get("scaling") or {}).get("strategy", "ddp")
            if before != spec.scaling.strategy:
                raise SpecError(
                    f"the run being resumed ({run_dir}) wrote {before} checkpoints; resume "
                    f"with scaling.strategy={before} or start a new run name",
                    key="scaling.strategy",
                )
        return record
    if exists:
        if not overwrite:
            raise StorageError(
                f"run {spec.name!r} already exists under {spec.storage.path}: pass --resume to "
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

    from raylift.artifacts.checkpoints import step_of
    from raylift.training.interrupts import StopOnSigterm, new_key
    from raylift.training.progress import ProgressCallback
    from raylift.training.setup import load_data, plan_finetune

    resolved = resolve_spec(spec)
    data = load_data(resolved)  # bad data or metric fails here, before the run folder is touched
    metric, mode = metric_and_mode(spec, data.info.task)
    finetune = plan_finetune(resolved, data.info)  # and a finetune glob that matches nothing
    resolved["train"]["metric"], resolved["train"]["mode"] = metric, mode
    previous = prepare_run_dir(spec, resolved, resume=resume, overwrite=overwrite)
    record = RunRecord(
        name=spec.name,
        status="running",
        started=previous.started if previous else now(),
        spec=resolved,
        attempts=(previous.attempts + 1) if previous else 1,
        metrics=dict(previous.metrics) if previous else {},
        recoveries=list(previous.recoveries) if previous else [],
        started_from=previous.started_from if previous else None,
    )
    if start_from is not None:
        folder, source = start_from
        name = os.path.basename(folder.rstrip("/"))
        storage.upload_dir(folder, storage.join(spec.run_dir, name))
        record.started_from = {"checkpoint": source, "step": step_of(name)}
    record.save(spec.run_dir)
    if finetune is not None and on_event is not None:
        on_event({"finetune": finetune.describe(), **finetune.metrics()})

    # Pin the progress queue to the driver's node: on a worker node it would die
    # with that node, and the driver would go blind to a run that carries on.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    queue = Queue(maxsize=1000, actor_options={"num_cpus": 0, "scheduling_strategy": here})
    stop = threading.Event()
    pump = threading.Thread(
        target=_pump,
        args=(queue, stop, on_event, record, spec.run_dir, run_telemetry(spec, metric)),
        daemon=True,
    )
    pump.start()
    stopper = StopOnSigterm(new_key(spec.name))
    trainer = build_trainer(
        spec,
        resolved,
        ray.put(data),
        callbacks=[ProgressCallback(queue)],
        stop_key=stopper.key,
        reset_hparams=start_from is not None,
    )
    try:
        with _start_timeout(spec), stopper.installed():
            result = trainer.fit()
    except KeyboardInterrupt:
        record.status, record.finished = "stopped", now()
        record.save(spec.run_dir)
        raise
    except Exception as exc:
        record.status, record.finished, record.error = "failed", now(), _summarise(exc)
        record.save(spec.run_dir)
        raise TrainingError(f"run {spec.name!r} failed: {record.error}") from exc
    finally:
        stop.set()
        pump.join(timeout=30)
        _shutdown_queue(queue)
    if stopper.requested:
        record.status, record.finished = "stopped", now()
        record.metrics = _clean(result.metrics or {})
        record.save(spec.run_dir)
        step = (result.metrics or {}).get("step")
        raise JobStopped(
            f"run {spec.name!r} stopped at step {step} after a checkpoint; "
            "continue it with `raylift train FILE --resume`"
        )

    best = _best_checkpoint(result, spec.run_dir, metric, mode)
    if best is None:
        raise TrainingError(f"run {spec.name!r} finished without a checkpoint to export")
    checkpoint, best_metrics = best
    from raylift.training.exporting import export_from_checkpoint

    export_dir = storage.join(spec.run_dir, "model")
    with checkpoint.as_directory() as local:
        export_from_checkpoint(local, export_dir, data)
    record.status, record.finished = "succeeded", now()
    record.metrics = _clean(result.metrics or {})
    record.best_metric = {
        "name": metric,
        "mode": mode,
        "value": best_metrics.get(metric),
        "step": best_metrics.get("step"),
    }
    record.export = export_dir
    record.save(spec.run_dir)
    return TrainOutcome(
        spec.run_dir,
        export_dir,
        record.metrics,
        _clean(best_metrics),
        metric,
        mode,
        record.peak_memory,
    )


@contextlib.contextmanager
def _start_timeout(spec: JobSpec) -> Iterator[None]:
    """Elastic runs: a short worker-group start timeout, unless the user set one.

    Train copies ``RAY_TRAIN_*`` variables from this process when ``fit()`` starts.
    """
    elastic = spec.scaling.min_workers < spec.scaling.max_workers
    if not elastic or START_TIMEOUT_ENV in os.environ:
        yield
        return
    os.environ[START_TIMEOUT_ENV] = ELASTIC_START_TIMEOUT_S
    try:
        yield
    finally:
        os.environ.pop(START_TIMEOUT_ENV, None)


def _best_checkpoint(
    result: Any, run_dir: str, metric: str, mode: str
) -> tuple[Any, dict[str, Any]] | None:
    """The best by ``metric`` of Ray's kept checkpoints and the copy under best/."""
    from ray.train import Checkpoint

    from raylift.artifacts.checkpoints import best_checkpoints, newest_complete_checkpoint

    kept = [(Checkpoint(path), metrics) for path, metrics in best_checkpoints(run_dir)]
    scored = [(c, m) for c, m in [*(result.best_checkpoints or []), *kept] if metric in m]
    if not scored:
        if result.checkpoint:
            return result.checkpoint, dict(result.metrics or {})
        # Nothing reported in this attempt (it resumed at its last step, e.g. from a
        # checkpoint another run handed over): the newest complete one on storage.
        newest = newest_complete_checkpoint(run_dir)
        return (Checkpoint(newest[0]), newest[1]) if newest else None
    sign = 1 if mode == "max" else -1
    return max(scored, key=lambda pair: (sign * float(pair[1][metric]), pair[1].get("step", 0)))


class RecoveryTracker:
    """Turns progress events into recovery records: restarts and resizes.

    A worker's first report after resuming carries ``resumed_from_step``; the
    steps lost are the last step seen before the failure minus that step.
    """

    def __init__(self, last_step: int = 0) -> None:
        self.last_step = last_step
        self.last_world: int | None = None
        self.restarts = 0
        self.attempt: str | None = None
        self.notice: str | None = None  # an early checkpoint since the last recovery

    def observe(self, event: dict[str, Any]) -> dict[str, Any] | None:
        recovery = None
        attempt = event.get("attempt")
        new_attempt = (
            attempt != self.attempt if attempt else event.get("restarts", 0) > self.restarts
        )
        if new_attempt and "resumed_from_step" in event:
            resumed = int(event["resumed_from_step"])
            before = self.last_world or int(event.get("world_size_before") or 0)
            recovery = {
                "time": now(),
                "kind": "resize" if before and before != event["world_size"] else "restart",
                "from_workers": before,
                "to_workers": event["world_size"],
                "resumed_from_step": resumed,
                "steps_lost": max(0, self.last_step - resumed),
                "notice": self.notice,
            }
            self.restarts = int(event["restarts"])
            self.notice = None
        self.attempt = attempt or self.attempt
        if event.get("checkpoint_reason"):
            self.notice = str(event["checkpoint_reason"])
        self.last_step = int(event.get("step", self.last_step))
        self.last_world = int(event.get("world_size", self.last_world or 0))
        return recovery


def _pump(
    queue: Any,
    stop: threading.Event,
    on_event: EventHandler | None,
    record: RunRecord,
    run_dir: str,
    telemetry: Any,
) -> None:
    """Driver thread: hand progress events to the display; keep the record fresh.

    After the run ends (``stop``) it drains what is left, so the last reports (the
    final validation, which Tune's schedulers wait for) are not dropped.
    """
    from raylift.training.telemetry import memory_summary

    tracker = RecoveryTracker(int(record.metrics.get("step", 0)))
    telemetry.keep_fresh(stop)
    history = MetricsHistory(run_dir)
    saved_at = 0.0
    while True:
        try:
            event = queue.get(timeout=0.5)
        except Exception:  # ray.util.queue.Empty, or the queue is gone
            if stop.is_set():
                return  # the run is over and the queue is drained
            continue
        recovery = tracker.observe(event)
        with contextlib.suppress(Exception):  # metrics must never stop the display
            if recovery is not None:
                telemetry.recovered(recovery)
            telemetry.report(event)
        if recovery is not None:
            record.recoveries.append(recovery)
            event = {**event, "recovery": recovery}
        with contextlib.suppress(OSError):
            history.add(event)
        if on_event is not None:
            on_event(event)
        record.metrics = _clean(event)
        record.peak_memory = memory_summary(event, record.peak_memory)
        # Keep the record current (a new driver resuming after this one died reads
        # the last step from it); throttled on remote storage.
        due = time.monotonic() - saved_at >= (0.0 if not storage.is_remote(run_dir) else 10.0)
        if due or event.get("checkpoint") or recovery is not None:
            with contextlib.suppress(OSError):
                record.save(run_dir)
                history.flush()
                saved_at = time.monotonic()


def run_telemetry(spec: JobSpec, metric: str) -> Any:
    """The run's metrics (``training/telemetry.py``), published by this driver."""
    from raylift.training.telemetry import TrainTelemetry

    telemetry = TrainTelemetry(spec.name, metric)
    telemetry.latest.update(
        min_workers=float(spec.scaling.min_workers), max_workers=float(spec.scaling.max_workers)
    )
    return telemetry


def _shutdown_queue(queue: Any) -> None:
    with contextlib.suppress(Exception):
        queue.shutdown(force=True)


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy without Ray's bookkeeping keys."""
    out = {}
    for key, value in metrics.items():
        if key in ("checkpoint", "recovery", "peak_memory_per_worker") or key.startswith("_"):
            continue
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        out[key] = value
    return out


def _summarise(exc: BaseException) -> str:
    failures = getattr(exc, "worker_failures", None)
    if failures:
        rank, error = sorted(failures.items())[0]
        return f"worker {rank}: {type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1][:300] if text else ''}"
