"""YAML -> typed spec, with errors that name the file, the dotted key and the fix."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from raylift.errors import SpecError
from raylift.registry import did_you_mean
from raylift.specs.job import KeyedError
from raylift.specs.overrides import apply_overrides

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | os.PathLike[str]) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse a YAML mapping with ``yaml.safe_load`` semantics; keep the node tree."""
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=file) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a spec file", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc}", file=file) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"YAML syntax error: {problem}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    if data is None:
        raise SpecError("the file is empty", file=file)
    if not isinstance(data, dict):
        raise SpecError(
            f"the top level must be a mapping of keys, not a {type(data).__name__}", file=file
        )
    return data, node


def validate(
    model: type[M],
    data: dict[str, Any],
    *,
    file: str | None = None,
    node: yaml.Node | None = None,
) -> M:
    """``model.model_validate(data)``, turning the first error into a SpecError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_spec_error(exc, model, file=file, node=node) from None


def load_model_file(
    model: type[M], path: str | os.PathLike[str], overrides: list[str] | None = None
) -> M:
    """Load ``path`` as ``model``, applying ``--set key=value`` overrides first."""
    data, node = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, file=str(path))
    return validate(model, data, file=str(path), node=node)


def to_spec_error(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    file: str | None = None,
    node: yaml.Node | None = None,
) -> SpecError:
    """The first pydantic error, as one line naming the dotted key and the fix."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    keyed = (err.get("ctx") or {}).get("error")
    if isinstance(keyed, KeyedError):
        loc = loc + keyed.subloc
        if isinstance(keyed.inner, ValidationError):  # registry params
            inner = keyed.inner.errors()[0]
            loc = loc + [str(p) for p in inner["loc"]]
            return _make(inner, loc, file, node, params_model=keyed.inner.title, base=model)
        err = {"type": "value_error", "msg": keyed.message}
    return _make(err, loc, file, node, base=model)


def _make(
    err: Any,
    loc: list[str],
    file: str | None,
    node: yaml.Node | None,
    *,
    base: type[BaseModel],
    params_model: str | None = None,
) -> SpecError:
    kind = err["type"]
    key = ".".join(loc) if loc else None
    if kind == "extra_forbidden":
        known = _known_keys(base, loc[:-1], params_model)
        hint = did_you_mean(loc[-1], known)
        choices = f"; known keys here: {', '.join(known)}" if known and not hint else ""
        message = f"unknown key{hint}{choices}"
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and kind not in {"model_type", "dict_type"}:
            shown = repr(err["input"])
            if len(shown) <= 60 and not isinstance(err["input"], dict):
                message += f" (got {shown})"
    line, column = position(node, loc)
    return SpecError(message, file=file, key=key, line=line, column=column)


def _known_keys(base: type[BaseModel], loc: list[str], params_model: str | None) -> list[str]:
    """Field names of the model found at ``loc`` inside ``base`` (empty if unknown)."""
    cls: Any = base
    for i, part in enumerate(loc):
        if part.isdigit():  # an index into a list of models
            continue
        if part == "params" and params_model is not None and i == len(loc) - 1:
            return _registry_params_fields(params_model)
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = _model_in(field.annotation)
        if cls is None:
            return []
    return list(getattr(cls, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _registry_params_fields(title: str) -> list[str]:
    from raylift.data import DATASETS
    from raylift.models import MODELS

    for registry in (MODELS, DATASETS):
        for name in registry.names():
            params_model = registry.get(name).params_model
            if params_model.__name__ == title:
                return list(params_model.model_fields)
    return []


def position(node: yaml.Node | None, loc: list[str]) -> tuple[int | None, int | None]:
    """Line/column (1-based) of the deepest node of ``loc`` present in the YAML."""
    best: yaml.Node | None = node
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            match = next((v for k, v in current.value if getattr(k, "value", None) == part), None)
            key_node = next(
                (k for k, _ in current.value if getattr(k, "value", None) == part), None
            )
            if match is None:
                break
            best = key_node
            current = match
        elif (
            isinstance(current, yaml.SequenceNode)
            and part.isdigit()
            and int(part) < len(current.value)
        ):
            current = current.value[int(part)]
            best = current
        else:
            break
    if best is None or best is node:
        return None, None
    return best.start_mark.line + 1, best.start_mark.column + 1
