"""One trial: the base job spec with the sampled values, trained by ``run_training``.

A trial is exactly a ``raylift train`` run (same trainer function, checkpoints,
run record and export) under ``<sweep>/trials/<trial id>/``. Its validation
reports (the ones carrying the sweep's metric) go to Tune, with ``epoch`` and
``step`` as the clocks schedulers can use. Under PBT each reported checkpoint
also goes to Tune, so Tune can hand a better trial's checkpoint to a worse one:
the restarted trial starts its run folder afresh from that checkpoint, with its
own (perturbed) hyperparameters (``run_training(start_from=...)``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from raylift import storage
from raylift.specs import spec_from_dict
from raylift.specs.overrides import set_dotted
from raylift.specs.sweep import SweepSpec
from raylift.tuning.space import overrides_for

TRIALS_DIR = "trials"


def trial_run_name(trial_id: str) -> str:
    return f"trial-{trial_id}"


def trial_spec_data(
    config: dict[str, Any], sweep: SweepSpec, base: dict[str, Any], trial_id: str
) -> dict[str, Any]:
    """The job spec mapping of one trial."""
    data = base
    for path, value in overrides_for(config, sweep):
        data = set_dotted(data, path, value)
    data = set_dotted(data, ["name"], trial_run_name(trial_id))
    return set_dotted(data, ["storage", "path"], sweep.sweep_dir + "/" + TRIALS_DIR)


def run_trial(config: dict[str, Any], sweep_data: dict[str, Any], base: dict[str, Any]) -> None:
    """Tune function trainable (runs in the trial's actor)."""
    import ray.tune
    from ray.tune import Checkpoint as TuneCheckpoint

    from raylift.artifacts.checkpoints import checkpoint_dir_name
    from raylift.artifacts.runs import RECORD_FILE, RunRecord
    from raylift.artifacts.sealed import verify
    from raylift.training.driver import run_training

    sweep = SweepSpec.model_validate(sweep_data)
    context = ray.tune.get_context()
    spec = spec_from_dict(trial_spec_data(config, sweep, base, context.get_trial_id()))
    metric = sweep.metric or spec.train.metric
    pbt = sweep.scheduler.type == "pbt"

    final: list[dict[str, Any]] = []
    reported: list[bool] = []

    def report(event: dict[str, Any]) -> None:
        reported.append(True)
        metrics = {k: v for k, v in event.items() if isinstance(v, int | float | str | bool)}
        path = event.get("checkpoint")
        if pbt and path:
            ray.tune.report(metrics, checkpoint=TuneCheckpoint.from_directory(path))
        else:
            ray.tune.report(metrics)

    def to_tune(event: dict[str, Any]) -> None:
        if metric not in event:
            return
        if int(event.get("step", 0)) >= int(event.get("total_steps", 1 << 62)):
            # Held back until the run has exported its model: a scheduler that stops
            # the trial at its last report (ASHA at max_t) would kill the export.
            final.append(event)
            return
        report(event)

    donor = ray.tune.get_checkpoint()
    done_before = RunRecord.load(spec.run_dir) if donor is None else None
    if done_before is not None and done_before.status == "succeeded" and done_before.export:
        # Finished and exported before Tune recorded it (its driver died in between):
        # not run again; Tune gets the recorded final result.
        result = dict(done_before.metrics)
        result.setdefault(metric, done_before.best_metric.get("value"))
        report({**result, "done": True})
        return
    if donor is None:
        # A first start, or Tune restarting this trial: its own run folder resumes.
        resume = storage.read_text(storage.join(spec.run_dir, RECORD_FILE)) is not None
        outcome = run_training(spec, resume=resume, on_event=to_tune)
    else:
        # PBT exploit (or a restore under PBT): a fresh run from that checkpoint,
        # with this trial's (perturbed) hyperparameters.
        with tempfile.TemporaryDirectory(prefix="raylift-donor-") as tmp:
            with donor.as_directory() as local:
                step = int(verify(local).get("step", 0))
                start_from = os.path.join(tmp, checkpoint_dir_name(step))
                shutil.copytree(local, start_from)
            source = donor.path
            outcome = run_training(
                spec, overwrite=True, on_event=to_tune, start_from=(start_from, source)
            )
    if not final and not reported and metric in outcome.best_metrics:
        # Nothing left to train (the run had finished before Tune restarted this trial,
        # e.g. its driver was killed right after): Tune still needs the trial's result.
        final.append(outcome.best_metrics)
    for event in final:
        # done: the trial is complete, so no scheduler acts on this last result (PBT
        # would otherwise restart a finished trial from another's final checkpoint).
        report({**event, "done": True})
