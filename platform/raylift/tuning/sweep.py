"""Run a sweep with Ray Tune: trials are raylift training runs; the winner is exported.

Layout under ``<storage>/<sweep>/``: ``trials/<trial run>/`` (each a normal run
folder: checkpoints, record, ``model/``), ``tune/`` (Tune's experiment state,
which ``--resume`` restores), ``best/model/`` (a copy of the best trial's
export, ready for serving) and ``sweep.json`` (the leaderboard).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raylift import storage
from raylift.errors import SpecError, TrainingError
from raylift.specs import JobSpec, load_spec
from raylift.specs.loader import load_model_file
from raylift.specs.resolve import Objective
from raylift.specs.sweep import SweepSpec
from raylift.tuning.space import check_space, tune_space
from raylift.tuning.trial import TRIALS_DIR, run_trial, trial_run_name

if TYPE_CHECKING:
    from raylift.tuning.progress import TrialRow

TUNE_DIR = "tune"
BEST_DIR = "best"
RECORD = "sweep.json"
TRIAL_DRIVER_CPU = 0.01  # the trial's own actor only waits on its TorchTrainer


@dataclass
class LoadedSweep:
    sweep: SweepSpec
    base: JobSpec
    file: str

    @property
    def objective(self) -> Objective:
        """The sweep's metric and mode, else the base job's; a mode the metric implies."""
        if self.sweep.metric is not None:
            return Objective.of(self.sweep.metric, self.sweep.mode)
        if self.base.train.metric is None:  # load_sweep refuses this
            raise SpecError("give metric: (the base spec has no train.metric)", file=self.file)
        return Objective.of(self.base.train.metric, self.sweep.mode or self.base.train.mode)

    @property
    def metric(self) -> str:
        return self.objective.metric

    @property
    def mode(self) -> str:
        return self.objective.mode


def load_sweep(file: str, overrides: list[str] | None = None) -> LoadedSweep:
    """The sweep spec, its base job spec, and the space checked against it."""
    sweep = load_model_file(SweepSpec, file, overrides)
    base_path = Path(file).parent / sweep.base
    try:
        base = load_spec(base_path)
    except SpecError as exc:
        raise SpecError(f"base spec {sweep.base}: {exc}", file=file, key="base") from None
    loaded = LoadedSweep(sweep, base, file)
    check_space(sweep, base, file=file)
    if sweep.metric is None and base.train.metric is None:
        raise SpecError("give metric: (the base spec has no train.metric)", file=file, key="metric")
    return loaded


def build_tuner(loaded: LoadedSweep, *, resume: bool, callbacks: list[Any]) -> Any:
    from ray import tune

    sweep = loaded.sweep
    base = loaded.base.model_dump(mode="json")
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, sweep_data=sweep.model_dump(mode="json"), base=base),
        {"cpu": TRIAL_DRIVER_CPU},
    )
    tune_dir = storage.join(sweep.sweep_dir, TUNE_DIR)
    if resume:
        if not tune.Tuner.can_restore(tune_dir):
            raise SpecError(
                f"nothing to resume: no sweep state in {tune_dir}; run it without --resume",
                file=loaded.file,
            )
        return tune.Tuner.restore(tune_dir, trainable, resume_unfinished=True, resume_errored=True)
    if tune.Tuner.can_restore(tune_dir):
        raise SpecError(
            f"sweep {sweep.name!r} already exists under {sweep.storage.path}: pass --resume to "
            "continue it, or --set name=NEW",
            file=loaded.file,
        )
    num_samples = sweep.num_samples
    if sweep.budget.max_trials is not None:
        num_samples = min(num_samples, max(1, sweep.budget.max_trials // sweep.grid_size()))
    return tune.Tuner(
        trainable,
        param_space=tune_space(sweep),
        tune_config=tune.TuneConfig(
            metric=loaded.metric,
            mode=loaded.mode,
            num_samples=num_samples,
            max_concurrent_trials=sweep.max_concurrent,
            scheduler=make_scheduler(loaded),
            search_alg=make_searcher(loaded),
            time_budget_s=sweep.budget.time_limit_s,
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=sweep.sweep_dir,
            callbacks=callbacks,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


def make_scheduler(loaded: LoadedSweep) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )

    spec = loaded.sweep.scheduler
    if spec.type == "asha":
        max_t = spec.max_t or _default_max_t(loaded, spec.time_attr)
        return ASHAScheduler(
            time_attr=spec.time_attr,
            max_t=max_t,
            grace_period=min(spec.grace_period, max_t),
            reduction_factor=spec.reduction_factor,
        )
    if spec.type == "median":
        return MedianStoppingRule(
            time_attr=spec.time_attr,
            grace_period=spec.grace_period,
            min_samples_required=spec.min_samples_required,
        )
    if spec.type == "pbt":
        space = tune_space(loaded.sweep)
        return PopulationBasedTraining(
            time_attr=spec.time_attr,
            perturbation_interval=spec.perturbation_interval,
            quantile_fraction=spec.quantile_fraction,
            hyperparam_mutations={key: space[key] for key in loaded.sweep.pbt_mutations()},
            synch=spec.synch,
        )
    return FIFOScheduler()


def _default_max_t(loaded: LoadedSweep, time_attr: str) -> int:
    train = loaded.base.train
    if time_attr == "epoch" and train.epochs:
        return int(train.epochs)
    if time_attr == "step" and train.max_steps:
        return int(train.max_steps)
    raise SpecError(
        f"scheduler.max_t is needed: the base spec gives no length in {time_attr}s",
        file=loaded.file,
        key="scheduler.max_t",
    )


def make_searcher(loaded: LoadedSweep) -> Any:
    from ray.tune.search import BasicVariantGenerator

    search = loaded.sweep.search
    if search.type == "optuna":
        try:
            import optuna
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise SpecError(
                "search.type optuna needs the optuna package (pip install optuna)",
                file=loaded.file,
                key="search.type",
            ) from None
        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=search.seed))
    # A search algorithm given to Tune ignores TuneConfig.max_concurrent_trials.
    return BasicVariantGenerator(
        random_state=search.seed, max_concurrent=loaded.sweep.max_concurrent
    )


def run_sweep(
    loaded: LoadedSweep,
    *,
    resume: bool = False,
    on_update: Callable[[list[TrialRow]], None] | None = None,
) -> dict[str, Any]:
    """Fit the sweep; copy the winner's export to ``best/model``; write ``sweep.json``."""
    from raylift.tuning.orphans import ReapOrphanedPlacementGroups
    from raylift.tuning.progress import SweepProgress

    progress = SweepProgress(loaded.sweep.name, loaded.objective, on_update)
    tuner = build_tuner(loaded, resume=resume, callbacks=[progress, ReapOrphanedPlacementGroups()])
    started = time.time()
    results = tuner.fit()
    record = leaderboard(loaded, results)
    mark_stopped_early(loaded, record["trials"])
    record["wall_s"] = round(time.time() - started, 1)
    best = record.get("best")
    if best is None:
        _write_record(loaded, record)
        raise TrainingError(
            f"sweep {loaded.sweep.name!r} ended without a finished trial that reported "
            f"{loaded.metric} and exported a model; see "
            f"{storage.join(loaded.sweep.sweep_dir, TRIALS_DIR)}"
        )
    source = storage.join(loaded.sweep.sweep_dir, TRIALS_DIR, best["run"], "model")
    target = storage.join(loaded.sweep.sweep_dir, BEST_DIR, "model")
    _copy_export(source, target)
    record["best"]["export"] = target
    _write_record(loaded, record)
    return record


def leaderboard(loaded: LoadedSweep, results: Any) -> dict[str, Any]:
    """Every trial with its config, status and best metric; the best finished one first."""
    objective = loaded.objective
    metric = objective.metric
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        values = [] if frame is None or metric not in frame else frame[metric].dropna().tolist()
        best_value = objective.best(values)
        trial_id = os.path.basename(result.path.rstrip("/")) if result.path else ""
        config = {k: v for k, v in (result.config or {}).items() if k in loaded.sweep.space}
        rows.append(
            {
                "trial": (result.metrics or {}).get("trial_id", trial_id),
                "run": trial_run_name((result.metrics or {}).get("trial_id", trial_id)),
                "config": config,
                "best": best_value,
                "last": (result.metrics or {}).get(metric),
                "epochs": (result.metrics or {}).get("epoch"),
                "status": _status(result),
            }
        )
    rows.sort(key=lambda r: (r["best"] is None, -objective.score(r["best"] or 0.0)))
    exported = [r for r in rows if r["best"] is not None and _has_export(loaded, r["run"])]
    return {
        "sweep": loaded.sweep.name,
        "metric": metric,
        "mode": objective.mode,
        "trials": rows,
        "best": dict(exported[0]) if exported else None,
    }


def _status(result: Any) -> str:
    if result.error:
        return "error"
    from raylift.tuning.progress import finished_result

    return "done" if finished_result(result.metrics or {}) else "stopped early"


def mark_stopped_early(loaded: LoadedSweep, rows: list[dict[str, Any]]) -> None:
    """A trial a scheduler stopped was killed mid-run: its record says so, not 'failed'."""
    from raylift.artifacts.runs import RunRecord

    for row in rows:
        if row["status"] != "stopped early":
            continue
        run_dir = storage.join(loaded.sweep.sweep_dir, TRIALS_DIR, row["run"])
        record = RunRecord.load(run_dir)
        if record is not None and record.status in ("running", "failed"):
            record.status, record.error = "stopped early", None
            record.save(run_dir)


def _has_export(loaded: LoadedSweep, run: str) -> bool:
    from raylift.artifacts.export import MANIFEST_NAME

    manifest = storage.join(loaded.sweep.sweep_dir, TRIALS_DIR, run, "model", MANIFEST_NAME)
    return storage.read_text(manifest) is not None


def _copy_export(source: str, target: str) -> None:
    import tempfile

    storage.remove_dir(target)
    with tempfile.TemporaryDirectory(prefix="raylift-best-") as tmp:
        local = storage.download_dir(source, tmp)
        storage.upload_dir(local, target)


def _write_record(loaded: LoadedSweep, record: dict[str, Any]) -> None:
    storage.write_text(
        storage.join(loaded.sweep.sweep_dir, RECORD), json.dumps(record, indent=2, default=str)
    )
