"""The typed resolved job the workers receive, and the one Objective (metric + mode).

``resolve(spec)`` fills in what a job spec leaves to defaults or references:
registry params in full (defaults included, data file paths absolute), the
model taken from the ``init_from`` export when the spec names none, and
``init_from`` as a path. ``ResolvedJob.for_task`` then fixes the objective
once the data set's task is known. The driver, every worker, the checkpoint
state, the run record and the export carry this one object (as JSON on storage).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from raylift.errors import SpecError
from raylift.specs.job import METRICS, JobSpec, ModelSpec

Mode = Literal["min", "max"]


def infer_mode(metric: str) -> Mode:
    """Accuracies are better high; losses and perplexities low."""
    return "max" if "accuracy" in metric else "min"


class Objective(BaseModel):
    """What "better" means for a run, a sweep and the model they export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(description="The metric that ranks checkpoints and trials.")
    mode: Mode = Field(description="max: higher is better; min: lower is better.")

    @classmethod
    def of(cls, metric: str, mode: Mode | None = None) -> Objective:
        """``metric`` with ``mode``, or the mode its name implies."""
        return cls(metric=metric, mode=mode or infer_mode(metric))

    @classmethod
    def for_task(cls, task: str, metric: str | None = None, mode: Mode | None = None) -> Objective:
        """A job's objective: ``train.metric``/``train.mode``, else the task's default."""
        if metric is None:
            return cls.of("val_accuracy" if task == "classification" else "val_loss")
        if METRICS.get(metric) not in (None, task):
            raise SpecError(
                f"{metric} is not reported for {task} data; use val_loss or a {task} metric",
                key="train.metric",
            )
        return cls.of(metric, mode)

    def better(self, value: float, than: float | None) -> bool:
        """Whether ``value`` beats ``than`` (anything beats None)."""
        if than is None:
            return True
        return value > than if self.mode == "max" else value < than

    def score(self, value: float) -> float:
        """A sort key: higher is better whatever the mode."""
        return value if self.mode == "max" else -value

    def best(self, values: Iterable[float]) -> float | None:
        """The best of ``values`` (NaN ignored); None if there is none."""
        kept = [float(v) for v in values if not math.isnan(float(v))]
        if not kept:
            return None
        return max(kept) if self.mode == "max" else min(kept)

    def __str__(self) -> str:
        return f"{self.mode} {self.metric}"


class ResolvedJob(JobSpec):
    """A job spec with every reference and default resolved (see the module doc)."""

    model: ModelSpec = Field(description="The model, from the spec or from init_from's export.")

    @property
    def objective(self) -> Objective:
        """The run's objective; fixed by :meth:`for_task` before training starts."""
        if self.train.metric is None:
            raise SpecError("the job's objective is not resolved yet (train.metric)")
        return Objective.of(self.train.metric, self.train.mode)

    def for_task(self, task: str) -> ResolvedJob:
        """This job with ``train.metric`` and ``train.mode`` set for data of ``task``."""
        objective = Objective.for_task(task, self.train.metric, self.train.mode)
        train = self.train.model_copy(update={"metric": objective.metric, "mode": objective.mode})
        return self.model_copy(update={"train": train})

    @property
    def elastic(self) -> bool:
        return self.scaling.min_workers < self.scaling.max_workers

    @property
    def sharded(self) -> bool:
        """FSDP: every rank writes and reads its part of each checkpoint."""
        return self.scaling.strategy == "fsdp"

    def as_json(self) -> dict[str, Any]:
        """The JSON form kept in checkpoints, run records and exports."""
        return self.model_dump(mode="json")


def resolve(spec: JobSpec) -> ResolvedJob:
    """``spec`` with registry params in full, ``init_from`` a path, the model known."""
    from raylift.data import DATASETS
    from raylift.models import MODELS

    resolved = spec.model_dump(mode="json")
    resolved["init_from"] = spec.init_from_path
    params = DATASETS.parse_params(spec.data.name, spec.data.params).with_absolute_paths()
    resolved["data"]["params"] = params.model_dump(mode="json")
    if spec.model is not None and spec.model.name is not None:
        model_params = MODELS.parse_params(spec.model.name, spec.model.params)
        resolved["model"]["params"] = model_params.model_dump(mode="json")
    if spec.model is None and spec.init_from_path:
        from raylift.artifacts.export import local_copy, read_manifest

        with local_copy(spec.init_from_path) as local:
            resolved["model"] = read_manifest(local)["model"]
    from raylift.data.base import uses_tokenizer

    if resolved["data"].get("tokenizer") is None and uses_tokenizer(spec.data.name):
        resolved["data"]["tokenizer"] = default_tokenizer(resolved["model"], spec.init_from_path)
    return ResolvedJob.model_validate(resolved)


TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json")


def default_tokenizer(model: dict[str, Any] | None, init_from: str | None) -> str | None:
    """The tokenizer a job uses without ``data.tokenizer``: the hf model's own.

    That is the tokenizer saved in ``init_from``'s export, else in the hf
    model's ``path``, where that local directory has one; None otherwise.
    """
    candidates = [init_from]
    if model is not None and model.get("name") == "hf":
        candidates.append((model.get("params") or {}).get("path"))
    for candidate in candidates:
        local = candidate and "://" not in candidate and os.path.isdir(candidate)
        if local and any(os.path.isfile(os.path.join(candidate, m)) for m in TOKENIZER_MARKERS):
            return os.path.abspath(candidate)
    return None


def load_resolved(raw: str | dict[str, Any]) -> ResolvedJob:
    """A resolved job back from its JSON (a checkpoint's or a run record's)."""
    if isinstance(raw, str):
        return ResolvedJob.model_validate_json(raw)
    return ResolvedJob.model_validate(raw)
