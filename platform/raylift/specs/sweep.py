"""The sweep spec (``kind: sweep``): a base job spec, a search space over its keys, how to search.

Every key in ``space`` is a dotted key of the base job spec (``train.lr``,
``model.params.dropout``...) with one distribution; a trial is the base spec
with the sampled values applied as ``--set`` overrides would be.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from raylift.specs.base import StrictModel
from raylift.specs.job import RUN_NAME_PATTERN, StorageSpec

NUMERIC = ("uniform", "loguniform", "quniform", "randint")
DISTRIBUTIONS = (*NUMERIC, "choice", "grid")


class Distribution(StrictModel):
    """Exactly one of the keys, e.g. ``{loguniform: [1e-4, 1e-2]}`` or ``{choice: [16, 32]}``."""

    uniform: list[float] | None = Field(
        None, min_length=2, max_length=2, description="[low, high]: any value between"
    )
    loguniform: list[float] | None = Field(
        None, min_length=2, max_length=2, description="[low, high], low > 0: uniform in log space"
    )
    quniform: list[float] | None = Field(
        None, min_length=3, max_length=3, description="[low, high, q]"
    )
    randint: list[int] | None = Field(
        None, min_length=2, max_length=2, description="[low, high), high exclusive"
    )
    choice: list[Any] | None = Field(None, description="values to sample from")
    grid: list[Any] | None = Field(None, description="values every trial combination gets")

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [name for name in DISTRIBUTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one distribution ({', '.join(DISTRIBUTIONS)}), got "
                f"{', '.join(given) or 'none'}"
            )
        kind = given[0]
        values = getattr(self, kind)
        if kind in ("choice", "grid") and not values:
            raise ValueError(f"{kind} needs at least one value")
        if kind in NUMERIC:
            low, high = values[0], values[1]
            if not low < high:
                raise ValueError(f"{kind}: low ({low}) must be < high ({high})")
            if kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform: low ({low}) must be > 0")
            if kind == "quniform" and not values[2] > 0:
                raise ValueError(f"quniform: q ({values[2]}) must be > 0")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in DISTRIBUTIONS if getattr(self, name) is not None)

    @property
    def values(self) -> list[Any]:
        return list(getattr(self, self.kind))

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC

    def bounds(self) -> tuple[float, float]:
        low, high = self.values[0], self.values[1]
        return float(low), float(high)


class SchedulerSpec(StrictModel):
    type: Literal["fifo", "asha", "pbt", "median"] = Field(
        "fifo", description="Trial scheduler: fifo (run all), asha, pbt or median stopping."
    )
    time_attr: Literal["epoch", "step", "training_iteration"] = Field(
        "epoch", description="The clock of grace periods and intervals."
    )
    grace_period: int = Field(1, ge=1, description="asha/median: time before any stopping.")
    reduction_factor: float = Field(2.0, gt=1, description="asha: keep 1/factor at each rung.")
    max_t: int | None = Field(None, ge=1, description="asha: longest a trial runs (time_attr).")
    perturbation_interval: int = Field(
        2, ge=1, description="pbt: exploit/explore every this many time_attr units."
    )
    quantile_fraction: float = Field(
        0.25, gt=0, le=0.5, description="pbt: bottom fraction copies the top fraction."
    )
    mutations: list[str] | None = Field(
        None,
        description="pbt: space keys to perturb (default: every train.* key of the space).",
    )
    synch: bool = Field(
        False,
        description="pbt: perturb all trials together at each interval (waits for the "
        "slowest; dependable with few trials whose start-up outweighs training).",
    )
    min_samples_required: int = Field(3, ge=1, description="median: trials before stopping.")


class SearchSpec(StrictModel):
    type: Literal["random", "grid", "optuna"] = Field(
        "random", description="How trials are sampled: random, grid, or optuna (TPE)."
    )
    seed: int | None = Field(0, description="Seed of the sampler (random and optuna).")


class BudgetSpec(StrictModel):
    time_limit_s: float | None = Field(None, gt=0, description="Stop the sweep after this long.")
    max_trials: int | None = Field(None, ge=1, description="At most this many trials in all.")


class SweepSpec(StrictModel):
    kind: Literal["sweep"] = Field("sweep", description="Spec kind; 'sweep' for a sweep.")
    name: str = Field(pattern=RUN_NAME_PATTERN, description="Sweep name: a folder under storage.")
    description: str = Field("", description="Free text for humans.")
    base: str = Field(description="The job spec every trial trains (relative to this file).")
    space: dict[str, Annotated[Distribution, Field()]] = Field(
        min_length=1, description="Dotted keys of the base spec -> a distribution."
    )
    metric: str | None = Field(None, description="Default: the base spec's train.metric.")
    mode: Literal["min", "max"] | None = Field(
        None,
        description="max or min; default: the base spec's train.mode for its metric, else "
        "what the metric implies (max for accuracies, min for losses).",
    )
    num_samples: int = Field(
        8, ge=1, description="Trials (with grid keys: samples per grid combination)."
    )
    max_concurrent: int = Field(2, ge=1, description="Trials running at once.")
    scheduler: SchedulerSpec = Field(
        default_factory=SchedulerSpec, description="Which trials to stop early or perturb."
    )
    search: SearchSpec = Field(default_factory=SearchSpec, description="How the space is sampled.")
    trial: dict[str, Any] = Field(
        default_factory=dict,
        description="Fixed dotted-key overrides for every trial, e.g. scaling.max_workers: 1.",
    )
    budget: BudgetSpec = Field(default_factory=BudgetSpec, description="Limits on the whole sweep.")
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="Where the sweep folder goes."
    )

    @field_validator("space", "trial", mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        """Nested mappings (what ``--set space.train.lr=...`` makes) -> dotted keys."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            leaf = not isinstance(node, dict) or not node or set(node) & set(DISTRIBUTIONS)
            if prefix and leaf:
                flat[prefix] = node
                return
            for key, child in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)

        walk("", value)
        return flat

    @field_validator("space")
    @classmethod
    def _keys(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key in space:
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"{key!r} is not a dotted key like train.lr")
        return space

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        kinds = {key: dist.kind for key, dist in self.space.items()}
        if self.search.type == "grid" and any(kind != "grid" for kind in kinds.values()):
            sampled = [key for key, kind in kinds.items() if kind != "grid"]
            raise ValueError(
                f"search.type grid needs grid values for every key; {', '.join(sampled)} "
                "are sampled (use search.type random, or grid: [...] values)"
            )
        if self.search.type == "optuna" and any(kind == "grid" for kind in kinds.values()):
            raise ValueError("search.type optuna cannot take grid keys; use choice instead")
        if self.scheduler.type == "pbt":
            for key in self.scheduler.mutations or []:
                if key not in self.space:
                    raise ValueError(f"scheduler.mutations: {key!r} is not a key of space")
            for key in self.pbt_mutations():
                if not key.startswith("train."):
                    raise ValueError(
                        f"scheduler.mutations: pbt can only change train.* keys (optimizer and "
                        f"schedule) of a running trial, not {key!r}"
                    )
            if not self.pbt_mutations():
                raise ValueError("scheduler.type pbt needs at least one train.* key in space")
        return self

    def pbt_mutations(self) -> list[str]:
        if self.scheduler.mutations is not None:
            return list(self.scheduler.mutations)
        return [key for key in self.space if key.startswith("train.")]

    @property
    def sweep_dir(self) -> str:
        return self.storage.path.rstrip("/") + "/" + self.name

    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self.space.values() if d.kind == "grid")
