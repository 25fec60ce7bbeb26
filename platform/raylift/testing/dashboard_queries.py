"""Every query of raylift's Grafana dashboards, ready to run against a Prometheus.

Plain Python (json, re, httpx); no Ray. A live test loads the dashboards, substitutes
the template variables, then checks each panel and each variable query returns data::

    for board in load_dashboards():
        for query in panel_queries(board, {"run": "digits-mlp"}):
            series_count(PROM, query.expr)
        for variable in variable_queries(board):
            label_values(PROM, variable.query)

A panel has data when any of its targets has; a panel whose description starts with
one of ``OPTIONAL_PREFIXES`` may have none (GPU-only and language-model-only data).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from raylift.testing import REPO_ROOT

DASHBOARDS_DIR = REPO_ROOT / "dashboards"
OPTIONAL_PREFIXES = ("GPU only:", "Language models only:")
# Grafana's built-in variables, as a live test wants them: a range long enough to hold
# the whole test, a rate window of a few scrape intervals.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "15m",
    "__range_s": "900",
    "__range_ms": "900000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*\S)\s*,\s*)?(\w+)\s*\)\s*$", re.S)


@dataclass(frozen=True)
class PanelQuery:
    """One target of one dashboard panel, ready to run."""

    dashboard: str  # the dashboard's uid
    panel: str  # the panel's title
    ref_id: str
    expr: str  # template variables substituted
    optional: bool  # the panel may have no data (GPU only, language models only)


@dataclass(frozen=True)
class VariableQuery:
    """One query variable of one dashboard, ready to run."""

    dashboard: str
    name: str
    query: str  # label_values(...), template variables substituted


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict[str, Any]]:
    """Every ``*.json`` dashboard of ``directory``, sorted by file name."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


def template_variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's template variables (``templating.list``)."""
    return list(board.get("templating", {}).get("list", []))


def variable_defaults(board: dict[str, Any]) -> dict[str, str]:
    """Each query variable's "All" value (its ``allValue`` regex, else ``.*``)."""
    return {
        v["name"]: v.get("allValue") or ".*"
        for v in template_variables(board)
        if v.get("type") == "query"
    }


def substitute(expr: str, values: dict[str, str]) -> str:
    """``$name``, ``${name}``, ``${name:fmt}`` and ``[[name]]`` replaced from ``values``.

    Raises KeyError for a variable neither in ``values`` nor a Grafana built-in.
    """

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(f"template variable ${name} has no value in {expr!r}")

    return _VARIABLE.sub(replace, expr)


def _values(board: dict[str, Any], values: dict[str, str] | None) -> dict[str, str]:
    merged = variable_defaults(board)
    merged.update(values or {})
    merged.setdefault("datasource", "prometheus")
    return merged


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Panels in order, the panels of collapsed rows included, rows themselves not."""
    found = []
    for panel in panels:
        if panel.get("type") == "row":
            found.extend(_panels(panel.get("panels", [])))
        else:
            found.append(panel)
    return found


def panel_queries(board: dict[str, Any], values: dict[str, str] | None = None) -> list[PanelQuery]:
    """(panel title, PromQL) of every target of every panel, variables substituted.

    ``values`` maps variable names to regexes (they are used with ``=~``); a variable
    not given takes its "All" value.
    """
    merged = _values(board, values)
    queries = []
    for panel in _panels(board.get("panels", [])):
        optional = str(panel.get("description", "")).startswith(OPTIONAL_PREFIXES)
        for query in panel.get("targets", []):
            queries.append(
                PanelQuery(
                    dashboard=board["uid"],
                    panel=panel["title"],
                    ref_id=query.get("refId", ""),
                    expr=substitute(query["expr"], merged),
                    optional=optional,
                )
            )
    return queries


def variable_query_text(variable: dict[str, Any]) -> str:
    """The query of a query variable (Grafana stores a string or a query object)."""
    query = variable.get("query")
    if isinstance(query, dict):
        return str(query.get("query", ""))
    return str(query or variable.get("definition", ""))


def variable_queries(
    board: dict[str, Any], values: dict[str, str] | None = None
) -> list[VariableQuery]:
    """The ``label_values(...)`` query of every query variable, variables substituted."""
    merged = _values(board, values)
    return [
        VariableQuery(board["uid"], v["name"], substitute(variable_query_text(v), merged))
        for v in template_variables(board)
        if v.get("type") == "query"
    ]


def parse_label_values(query: str) -> tuple[str | None, str]:
    """``label_values(selector, label)`` -> (selector, label); ``label_values(label)`` ->
    (None, label)."""
    match = _LABEL_VALUES.match(query)
    if not match:
        raise ValueError(f"not a label_values(...) query: {query!r}")
    return match.group(1), match.group(2)


def _get(prometheus: str, path: str, params: dict[str, Any], timeout_s: float) -> Any:
    response = httpx.get(f"{prometheus.rstrip('/')}{path}", params=params, timeout=timeout_s)
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body}")
    return body["data"]


def label_values(
    prometheus: str, query: str, lookback_s: float = 900.0, timeout_s: float = 10.0
) -> list[str]:
    """What Grafana's dropdown would list for ``query`` over the last ``lookback_s``.

    ``label_values(selector, label)`` reads ``/api/v1/series``; ``label_values(label)``
    reads ``/api/v1/label/<label>/values``.
    """
    selector, label = parse_label_values(query)
    now = time.time()
    window = {"start": now - lookback_s, "end": now}
    if selector is None:
        return sorted(_get(prometheus, f"/api/v1/label/{label}/values", window, timeout_s))
    series = _get(prometheus, "/api/v1/series", {**window, "match[]": selector}, timeout_s)
    return sorted({s[label] for s in series if label in s})


def series_count(
    prometheus: str,
    expr: str,
    lookback_s: float = 900.0,
    step_s: float = 5.0,
    timeout_s: float = 30.0,
) -> int:
    """How many series ``expr`` returns over the last ``lookback_s`` (a range query, as a
    Grafana panel runs it), counting only series with at least one non-NaN point."""
    now = time.time()
    params = {"query": expr, "start": now - lookback_s, "end": now, "step": step_s}
    result = _get(prometheus, "/api/v1/query_range", params, timeout_s)["result"]
    return sum(1 for s in result if any(v != "NaN" for _, v in s.get("values", [])))
