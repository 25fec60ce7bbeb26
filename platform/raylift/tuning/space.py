"""A sweep's search space: checked against the base job spec, turned into Ray Tune's."""

from __future__ import annotations

import itertools
from typing import Any

from raylift.errors import SpecError
from raylift.registry import did_you_mean
from raylift.specs import JobSpec, spec_from_dict
from raylift.specs.overrides import get_dotted
from raylift.specs.resolve import resolve
from raylift.specs.sweep import Distribution, SweepSpec


def check_space(sweep: SweepSpec, base: JobSpec, *, file: str | None = None) -> None:
    """Every space key exists in the base spec, suits its field, and yields valid specs."""
    from raylift.specs.overrides import set_dotted

    resolved = resolve(base).as_json()
    raw = base.model_dump(mode="json")
    for key, value in sweep.trial.items():  # the fixed overrides first, all together
        raw = set_dotted(raw, key.split("."), value)
    _check_value(raw, "", None, file, "trial")
    for key, dist in sweep.space.items():
        where = f"space.{key}"
        path = key.split(".")
        try:
            current = get_dotted(resolved, path)
        except KeyError:
            parent = _nearest_mapping(resolved, path)
            hint = did_you_mean(path[-1], list(parent)) if parent else ""
            raise SpecError(
                f"no key {key!r} in the base spec {sweep.base}{hint}; space keys are dotted "
                "keys of the job spec, e.g. train.lr or model.params.dropout",
                file=file,
                key=where,
            ) from None
        if dist.numeric and (isinstance(current, bool) or not isinstance(current, int | float)):
            raise SpecError(
                f"{dist.kind} needs a numeric field, but {key} is {current!r} in the base spec; "
                "use choice: [...] for other values",
                file=file,
                key=where,
            )
        for value in _extremes(dist):
            _check_value(raw, key, value, file, where)


def _nearest_mapping(data: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    node: Any = data
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _extremes(dist: Distribution) -> list[Any]:
    if dist.kind in ("choice", "grid"):
        return dist.values
    low, high = dist.values[0], dist.values[1]
    if dist.kind == "randint":
        return [low, high - 1]
    return [low, high]


def _check_value(raw: dict[str, Any], key: str, value: Any, file: str | None, where: str) -> None:
    from raylift.specs.overrides import set_dotted

    try:
        spec_from_dict(set_dotted(raw, key.split("."), value) if key else raw)
    except SpecError as exc:
        raise SpecError(
            (f"{value!r} makes the base spec invalid: " if key else "")
            + f"{exc.message}"
            + (f" (at {exc.key})" if exc.key and exc.key != key else ""),
            file=file,
            key=where,
        ) from None


def tune_space(sweep: SweepSpec) -> dict[str, Any]:
    """``param_space`` for ``Tuner``: one entry per dotted key (Tune takes any key)."""
    from ray import tune

    space: dict[str, Any] = {}
    for key, dist in sweep.space.items():
        values = dist.values
        if dist.kind == "uniform":
            space[key] = tune.uniform(values[0], values[1])
        elif dist.kind == "loguniform":
            space[key] = tune.loguniform(values[0], values[1])
        elif dist.kind == "quniform":
            space[key] = tune.quniform(values[0], values[1], values[2])
        elif dist.kind == "randint":
            space[key] = tune.randint(values[0], values[1])
        elif dist.kind == "choice":
            space[key] = tune.choice(values)
        else:
            space[key] = tune.grid_search(values)
    return space


def overrides_for(config: dict[str, Any], sweep: SweepSpec) -> list[tuple[list[str], Any]]:
    """The (path, value) pairs a trial applies to the base spec: fixed ones, then sampled."""
    pairs = [(key.split("."), value) for key, value in sweep.trial.items()]
    pairs += [(key.split("."), plain_value(config[key])) for key in sweep.space if key in config]
    return pairs


def plain_value(value: Any) -> Any:
    """numpy scalars (Tune's samplers) -> Python values the spec and YAML understand."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        return value.item()
    return value


def grid_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    grid = {k: d.values for k, d in sweep.space.items() if d.kind == "grid"}
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
