"""``--set a.b=c`` overrides, applied to the raw mapping before validation."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from raylift.errors import SpecError


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"bad --set {text!r}: write it as dotted.key=value, e.g. train.lr=0.01")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``path`` set to ``value`` (creating mappings on the way).

    A numeric part indexes a list: ``models.0.quantize=int8``.
    """
    result = copy.deepcopy(data)
    node: Any = result
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            child = node[_list_index(node, part, path, i)]
        else:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
        if not isinstance(child, dict | list):
            where = ".".join(path[: i + 1])
            raise SpecError(f"cannot set {'.'.join(path)}: {where} is not a mapping")
        node = child
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(node, last, path, len(path) - 1)] = value
    else:
        node[last] = value
    return result


def _list_index(items: list[Any], part: str, path: list[str], i: int) -> int:
    where = ".".join(path[:i]) or "the top level"
    if not part.isdigit() or int(part) >= len(items):
        raise SpecError(
            f"cannot set {'.'.join(path)}: {where} is a list of {len(items)}; "
            f"use an index from 0 to {len(items) - 1}"
        )
    return int(part)


def get_dotted(data: dict[str, Any], path: list[str]) -> Any:
    """The value at ``path``; KeyError if any part is missing."""
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(".".join(path))
        node = node[part]
    return node


def apply_overrides(
    data: dict[str, Any], overrides: list[str], *, file: str | None = None
) -> dict[str, Any]:
    """Apply each ``key=value`` in order; errors name the file."""
    for text in overrides:
        try:
            path, value = parse_override(text)
            data = set_dotted(data, path, value)
        except SpecError as exc:
            raise exc.with_file(file) if file else exc from None
    return data
