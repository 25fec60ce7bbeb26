"""Writes raylift's Grafana dashboards (``dashboards/raylift-*.json``) from the tables below.

Run ``python dashboards/generate.py`` after changing a panel; the unit tests check
that the JSON files are what this script writes. Plain Python: no Ray, no Grafana.

PromQL conventions (the same in every dashboard):

- every panel and variable query goes through the ``${datasource}`` variable;
- every selector filters by the dashboard's template variables with ``=~"$var"``
  (multi-select; "All" is a regex, ``.*`` or the variable's own ``allValue``);
- Ray adds per-process labels (instance, WorkerId, Component...), so every query
  aggregates to what a user asks about: ``max by (run)``, ``sum by (model)``...;
- counters are read with ``rate(...[$__rate_interval])``; a counter that only
  appears at its first increment (errors, restarts) is completed with
  ``or 0 * <a series that always exists>`` so the panel shows 0, not "No data";
- stats reduce with "last not null" over the time range, so a finished run (whose
  gauges expired) still shows its last values;
- a panel whose data only exists on some runs has a description starting with one
  of ``OPTIONAL_PREFIXES`` ("GPU only:", "Language models only:").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
OPTIONAL_PREFIXES = ("GPU only:", "Language models only:")
SCHEMA_VERSION = 39
GRID_WIDTH = 24

Panel = dict[str, Any]


# --- building blocks -------------------------------------------------------------------------


def target(expr: str, legend: str = "") -> dict[str, Any]:
    """One Prometheus query of a panel (refId set by ``_panel``)."""
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": True,
    }


def _thresholds(red: float | None, good_from: float | None = None) -> dict[str, Any]:
    """Green, red from ``red`` on; or red, green from ``good_from`` on."""
    if good_from is not None:
        steps = [{"color": "red", "value": None}, {"color": "green", "value": good_from}]
    else:
        steps = [{"color": "green", "value": None}]
        if red is not None:
            steps.append({"color": "red", "value": red})
    return {"mode": "absolute", "steps": steps}


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    width: int,
    height: int,
    red: float | None,
    decimals: int | None,
    mappings: dict[int, str] | None,
    minimum: float | None,
    maximum: float | None,
    good_from: float | None = None,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "palette-classic" if kind == "timeseries" else "thresholds"},
        "thresholds": _thresholds(red, good_from),
        "mappings": [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if mappings:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    str(k): {"text": v, "index": i} for i, (k, v) in enumerate(mappings.items())
                },
            }
        ]
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "axisPlacement": "auto",
            "stacking": {"mode": "none", "group": "A"},
        }
        options: dict[str, Any] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        options = {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
        }
    for ref, query in zip("ABCDEFGH", targets, strict=False):
        query["refId"] = ref
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
    }


def graph(
    title: str,
    description: str,
    *targets: dict[str, Any],
    unit: str = "short",
    width: int = 12,
    red: float | None = None,
    decimals: int | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Panel:
    """A time series panel."""
    return _panel(
        "timeseries", title, description, list(targets), unit=unit, width=width, height=8,
        red=red, decimals=decimals, mappings=None, minimum=minimum, maximum=maximum,
    )  # fmt: skip


def stat(
    title: str,
    description: str,
    *targets: dict[str, Any],
    unit: str = "short",
    width: int = 4,
    red: float | None = None,
    decimals: int | None = None,
    mappings: dict[int, str] | None = None,
    good_from: float | None = None,
) -> Panel:
    """A single-value panel (last value in the time range)."""
    return _panel(
        "stat", title, description, list(targets), unit=unit, width=width, height=4,
        red=red, decimals=decimals, mappings=mappings, minimum=None, maximum=None,
        good_from=good_from,
    )  # fmt: skip


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(items: list[Panel]) -> list[Panel]:
    """Numbers panels 1.. and places them left to right, wrapping at the grid width."""
    x = y = line_height = 0
    for number, item in enumerate(items, start=1):
        item["id"] = number
        if item["type"] == "row":
            y += line_height
            item["gridPos"] = {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}
            x, y, line_height = 0, y + 1, 0
            continue
        pos = item["gridPos"]
        if x + pos["w"] > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        line_height = max(line_height, pos["h"])
    return items


def query_variable(
    name: str, label: str, query: str, *, all_value: str = ".*", description: str = ""
) -> dict[str, Any]:
    """A multi-select template variable filled by a ``label_values(...)`` query."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DATASOURCE,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    datasource_variable = {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "regex": "",
        "current": {},
        "options": [],
        "refresh": 1,
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "skipUrlSync": False,
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["raylift"],
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "type": "dashboards",
                "title": "raylift",
                "tags": ["raylift"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": [datasource_variable, *variables]},
        "panels": layout(panels),
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "",
    }


def worker_hours(selector: str) -> str:
    """Worker-hours in the time range: mean world size x how long the run's gauge existed.

    Independent of the scrape interval: the subquery takes the first and last sample times.
    """
    gauge = f"ray_raylift_train_world_size{{{selector}}}"
    first, last = (f"{f}_over_time(timestamp({gauge})[$__range:])" for f in ("min", "max"))
    seconds = f"({last} - {first})"
    return f"avg_over_time({gauge}[$__range]) * {seconds} / 3600"


def counter_or_zero(counter: str, selector: str, by: str, always: str) -> str:
    """``counter`` summed by ``by``, or 0 for groups that ``always`` has but the counter not."""
    return f"sum by ({by}) ({counter}{{{selector}}}) or 0 * max by ({by}) ({always}{{{selector}}})"


def counter_or_zero_rate(counter: str, always: str, selector: str, by: str) -> str:
    """Per-second rate of ``counter``, or 0 for groups where only ``always`` exists yet."""
    return (
        f"sum by ({by}) (rate({counter}{{{selector}}}[$__rate_interval])) "
        f"or 0 * sum by ({by}) (rate({always}{{{selector}}}[$__rate_interval]))"
    )


# --- Training --------------------------------------------------------------------------------

RUN = 'run=~"$run"'


def training() -> dict[str, Any]:
    step = f"max by (run) (ray_raylift_train_step{{{RUN}}})"
    # fmt: off
    panels = [
        row("Progress"),
        stat("Step", "Optimizer steps completed.", target(step, "{{run}}")),
        stat("Epoch", "Epoch in progress (1-based).",
             target(f"max by (run) (ray_raylift_train_epoch{{{RUN}}})", "{{run}}")),
        stat("Workers", "Training workers in the current attempt.",
             target(f"max by (run) (ray_raylift_train_world_size{{{RUN}}})", "{{run}}")),
        stat("Training loss", "Mean training loss over the last report window.",
             target(f"max by (run) (ray_raylift_train_train_loss{{{RUN}}})", "{{run}}"),
             decimals=4),
        stat("Validation metric", "The run's validation metric at its last evaluation.",
             target(f"max by (run, metric) (ray_raylift_train_val_metric{{{RUN}}})",
                    "{{run}} {{metric}}"),
             decimals=4),
        stat("Restarts", "Restarts of the worker group from a checkpoint (failures and resizes).",
             target(counter_or_zero("ray_raylift_train_restarts_total", RUN, "run",
                                    "ray_raylift_train_step"), "{{run}}"),
             red=1),
        graph("Step", "Optimizer steps completed; a flat line on a live run is a stall.",
              target(step, "{{run}}")),
        graph("Training loss", "Mean training loss over each report window.",
              target(f"max by (run) (ray_raylift_train_train_loss{{{RUN}}})", "{{run}}")),
        graph("Validation metric", "The run's validation metric at each evaluation.",
              target(f"max by (run, metric) (ray_raylift_train_val_metric{{{RUN}}})",
                     "{{run}} {{metric}}"), width=24),
        row("Speed"),
        graph("Samples per second", "Training throughput of the whole worker group.",
              target(f"max by (run) (ray_raylift_train_samples_per_s{{{RUN}}})", "{{run}}"),
              width=6),
        graph("Tokens per second",
              "Language models only: training throughput in tokens (samples x context).",
              target(f"max by (run) (ray_raylift_train_tokens_per_s{{{RUN}}})", "{{run}}"),
              width=6),
        graph("Model FLOPs utilisation",
              "GPU only: language models' training FLOPs (6N + 12LdT per token) per second "
              "as a share of the GPUs' dense bf16 peak.",
              target(f"max by (run) (ray_raylift_train_mfu{{{RUN}}})", "{{run}}"),
              unit="percentunit", width=6, minimum=0),
        graph("Steps per minute", "Rate at which the step gauge advances.",
              target(f"60 * max by (run) (clamp_min(deriv(ray_raylift_train_step{{{RUN}}}"
                     f"[$__rate_interval]), 0))", "{{run}}"),
              width=6),
        row("Health"),
        graph("Workers",
              "World size now, the run's scaling.min_workers and max_workers, and its peak "
              "over the last hour (RayliftTrainingWorkersBelowMin fires below min, "
              "RayliftTrainingWorkersBelowPeak when it stays below the peak).",
              target(f"max by (run) (ray_raylift_train_world_size{{{RUN}}})", "{{run}}"),
              target(f"max by (run) (ray_raylift_train_min_workers{{{RUN}}})", "{{run}} min"),
              target(f"max by (run) (ray_raylift_train_max_workers{{{RUN}}})", "{{run}} max"),
              target(f"max by (run) (max_over_time(ray_raylift_train_world_size{{{RUN}}}[1h]))",
                     "{{run}} peak (1h)"),
              width=8, decimals=0),
        graph("Step changes in the last 10 minutes",
              "How often the step gauge changed over the last 10 minutes; 0 on a live run is "
              "what the RayliftTrainingStalled alert fires on.",
              target(f"max by (run) (changes(ray_raylift_train_step{{{RUN}}}[10m]))", "{{run}}"),
              width=8),
        graph("Restarts, resizes and steps lost",
              "Totals since the driver started: restarts from a checkpoint, restarts that "
              "changed the number of workers, and optimizer steps redone after restarts.",
              target(counter_or_zero("ray_raylift_train_restarts_total", RUN, "run",
                                     "ray_raylift_train_step"), "{{run}} restarts"),
              target(counter_or_zero("ray_raylift_train_resizes_total", RUN, "run",
                                     "ray_raylift_train_step"), "{{run}} resizes"),
              target(counter_or_zero("ray_raylift_train_steps_lost_total", RUN, "run",
                                     "ray_raylift_train_step"), "{{run}} steps lost"),
              width=8),
        row("Checkpoints and cost"),
        graph("Checkpoint duration", "Seconds to write and seal the last checkpoint.",
              target(f"max by (run) (ray_raylift_train_checkpoint_seconds{{{RUN}}})", "{{run}}"),
              unit="s", width=8),
        graph("Checkpoint size", "Size of the last checkpoint.",
              target(f"max by (run) (ray_raylift_train_checkpoint_bytes{{{RUN}}})", "{{run}}"),
              unit="bytes", width=8),
        stat("Worker-hours in the time range",
             "Mean world size x time the run reported in the dashboard's time range: what "
             "the run cost in worker time.",
             target(f"sum by (run) ({worker_hours(RUN)})", "{{run}}"), width=8, decimals=3),
        row("GPU"),
        graph("GPU memory per rank",
              "GPU only: memory held by each worker's tensors (torch.cuda.memory_allocated), "
              "and its peak since the worker started.",
              target(f"max by (run, rank) (ray_raylift_train_gpu_memory_bytes{{{RUN}}})",
                     "{{run}} rank {{rank}}"),
              target(f"max by (run, rank) (ray_raylift_train_gpu_memory_peak_bytes{{{RUN}}})",
                     "{{run}} rank {{rank}} peak"),
              unit="bytes"),
        graph("GPU utilisation per rank",
              "GPU only: utilisation of each worker's GPU over the last sample period (NVML).",
              target(f"max by (run, rank) (ray_raylift_train_gpu_utilization{{{RUN}}})",
                     "{{run}} rank {{rank}}"),
              unit="percent", minimum=0, maximum=100),
    ]
    # fmt: on
    return dashboard(
        "raylift-training",
        "raylift / Training",
        "raylift training runs: progress, speed, health, checkpoints and cost, per run.",
        [
            query_variable("run", "Run", "label_values(ray_raylift_train_step, run)"),
        ],
        panels,
    )


# --- Tuning ----------------------------------------------------------------------------------

SWEEP = 'sweep=~"$sweep"'
TRIAL = 'run=~"$trial"'


def _trials(states: str | None = None) -> str:
    state = f',state=~"{states}"' if states else ""
    return f"sum by (sweep) (max by (sweep, state) (ray_raylift_sweep_trials{{{SWEEP}{state}}}))"


def tuning() -> dict[str, Any]:
    best = f"max by (sweep, metric) (ray_raylift_sweep_best_metric{{{SWEEP}}})"
    # fmt: off
    panels = [
        row("Progress"),
        stat("Trials", "Trials of the sweep (all states).", target(_trials(), "{{sweep}}")),
        stat("Finished", "Share of trials that ended (terminated, stopped early or errored).",
             target(f"100 * {_trials('terminated|stopped_early|errored')} / {_trials()}",
                    "{{sweep}}"),
             unit="percent", decimals=0),
        stat("Running", "Trials running now.", target(_trials("running"), "{{sweep}}")),
        stat("Stopped early", "Trials a scheduler stopped before their last step.",
             target(_trials("stopped_early"), "{{sweep}}")),
        stat("Errored", "Trials that failed (the RayliftSweepTrialsErrored alert fires on them).",
             target(_trials("errored"), "{{sweep}}"), red=1),
        stat("Best metric", "Best value of the sweep's metric so far.",
             target(best, "{{sweep}} {{metric}}"), decimals=4),
        graph("Trials by state", "Trials of each state over time.",
              target(f"max by (sweep, state) (ray_raylift_sweep_trials{{{SWEEP}}})",
                     "{{sweep}} {{state}}")),
        graph("Best metric", "Best value of the sweep's metric so far, over time.",
              target(best, "{{sweep}} {{metric}}")),
        row("Trials"),
        graph("Trial validation metric",
              "Each trial run's validation metric (trial runs are named trial-<id>; the trial "
              "variable lists the trial runs in the time range, whatever their sweep).",
              target(f"max by (run, metric) (ray_raylift_train_val_metric{{{TRIAL}}})",
                     "{{run}} {{metric}}")),
        graph("Trial training loss", "Each trial run's mean training loss.",
              target(f"max by (run) (ray_raylift_train_train_loss{{{TRIAL}}})", "{{run}}")),
        graph("Trial step", "Optimizer steps each trial run completed.",
              target(f"max by (run) (ray_raylift_train_step{{{TRIAL}}})", "{{run}}"), width=8),
        graph("Trial samples per second", "Training throughput of each trial run.",
              target(f"max by (run) (ray_raylift_train_samples_per_s{{{TRIAL}}})", "{{run}}"),
              width=8),
        stat("Trial worker-hours in the time range",
             "Worker time of the selected trial runs in the dashboard's time range: what the "
             "sweep cost.",
             target(f"sum({worker_hours(TRIAL)})", "all selected trials"), width=8, decimals=3),
    ]
    # fmt: on
    return dashboard(
        "raylift-tuning",
        "raylift / Tuning",
        "raylift sweeps: trials by state, best metric, and the training metrics of trial runs.",
        [
            query_variable("sweep", "Sweep", "label_values(ray_raylift_sweep_trials, sweep)"),
            query_variable(
                "trial",
                "Trial run",
                'label_values(ray_raylift_train_step{run=~"trial-.*"}, run)',
                all_value="trial-.*",
            ),
        ],
        panels,
    )


# --- Serving ---------------------------------------------------------------------------------

APP_MODEL = 'application=~"$application",model=~"$model"'
APP_DEPLOYMENT = 'application=~"$application",deployment=~"$deployment"'
REQUESTS = f"ray_raylift_serve_requests_total{{{APP_MODEL}}}"
DEPLOYMENT_STATUS = {
    0: "UNKNOWN",
    1: "DEPLOY_FAILED",
    2: "UNHEALTHY",
    3: "UPDATING",
    4: "UPSCALING",
    5: "DOWNSCALING",
    6: "HEALTHY",
}


def _quantile(q: float, histogram: str, selector: str, by: str) -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) "
        f"(rate({histogram}_bucket{{{selector}}}[$__rate_interval])))"
    )


def _error_share(by: str) -> str:
    errors = f'ray_raylift_serve_requests_total{{{APP_MODEL},code=~"5.."}}'
    total = f"sum by ({by}) (rate({REQUESTS}[$__rate_interval]))"
    return f"100 * (sum by ({by}) (rate({errors}[$__rate_interval])) or 0 * {total}) / {total}"


def serving() -> dict[str, Any]:
    healthy = f"sum by (deployment) (ray_serve_deployment_replica_healthy{{{APP_DEPLOYMENT}}})"
    latency = "ray_raylift_serve_request_latency_ms"
    # fmt: off
    panels = [
        row("Traffic"),
        stat("Requests per second", "HTTP requests per second at the ingress.",
             target(f"sum by (model) (rate({REQUESTS}[$__rate_interval]))", "{{model}}"),
             unit="reqps", decimals=2),
        stat("Error rate (5xx)", "Share of requests answered with a 5xx status.",
             target(_error_share("model"), "{{model}}"), unit="percent", red=5, decimals=2),
        stat("p99 latency", "99th percentile of whole-request latency at the ingress.",
             target(_quantile(0.99, latency, APP_MODEL, "model"), "{{model}}"),
             unit="ms", red=2000),
        stat("Healthy replicas", "Replicas passing Serve's health check, per deployment.",
             target(healthy, "{{deployment}}"), good_from=1),
        stat("Deployment status", "Serve's status of each deployment.",
             target(f"max by (deployment) (ray_serve_deployment_status{{{APP_DEPLOYMENT}}})",
                    "{{deployment}}"),
             mappings=DEPLOYMENT_STATUS, width=8, good_from=6),
        graph("Requests per second by status code",
              "HTTP requests per second at the ingress, by model and status code.",
              target(f"sum by (model, code) (rate({REQUESTS}[$__rate_interval]))",
                     "{{model}} {{code}}"),
              unit="reqps"),
        graph("Error rate (5xx share)",
              "Share of requests answered with a 5xx status (the RayliftServeErrorRateHigh "
              "alert fires above 5 % for 5 minutes).",
              target(_error_share("model"), "{{model}}"), unit="percent", red=5),
        row("Latency"),
        graph("Request latency", "Whole-request latency at the ingress (HTTP in to HTTP out).",
              *[target(_quantile(q, latency, APP_MODEL, "model"), f"{{{{model}}}} p{p}")
                for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))],
              unit="ms"),
        graph("Replica processing latency (Ray Serve)",
              "Time Serve's replicas spent on each request, per deployment.",
              *[target(_quantile(q, "ray_serve_deployment_processing_latency_ms", APP_DEPLOYMENT,
                                 "deployment"), f"{{{{deployment}}}} p{p}")
                for q, p in ((0.5, 50), (0.99, 99))],
              unit="ms"),
        graph("Queue wait", "Time a request waited in the model replica for its batch.",
              *[target(_quantile(q, "ray_raylift_serve_queue_latency_ms", APP_MODEL, "model"),
                       f"{{{{model}}}} p{p}")
                for q, p in ((0.5, 50), (0.99, 99))],
              unit="ms"),
        graph("Model call latency", "One model call: a batch, or one generation.",
              *[target(_quantile(q, "ray_raylift_serve_model_latency_ms", APP_MODEL, "model"),
                       f"{{{{model}}}} p{p}")
                for q, p in ((0.5, 50), (0.99, 99))],
              unit="ms"),
        row("Replicas"),
        graph("Healthy replicas", "Replicas passing Serve's health check, per deployment (the "
              "RayliftServeNoHealthyReplica alert fires at 0).",
              target(healthy, "{{deployment}}"), width=8, decimals=0),
        graph("Requests in flight per replica", "Requests each replica is processing now.",
              target(f"sum by (deployment, replica) "
                     f"(ray_serve_replica_processing_queries{{{APP_DEPLOYMENT}}})",
                     "{{deployment}} {{replica}}"),
              width=8),
        graph("Replica errors per second", "Exceptions raised in the replicas, per deployment.",
              target(counter_or_zero_rate("ray_serve_deployment_error_counter_total",
                                          "ray_serve_deployment_request_counter_total",
                                          APP_DEPLOYMENT, "deployment"),
                     "{{deployment}}"),
              width=8),
        row("Model"),
        graph("Batch size", "Rows per model call: mean and 99th percentile.",
              target(f"sum by (model) (rate(ray_raylift_serve_batch_size_sum{{{APP_MODEL}}}"
                     f"[$__rate_interval])) / sum by (model) "
                     f"(rate(ray_raylift_serve_batch_size_count{{{APP_MODEL}}}[$__rate_interval]))",
                     "{{model}} mean"),
              target(_quantile(0.99, "ray_raylift_serve_batch_size", APP_MODEL, "model"),
                     "{{model}} p99"),
              width=8),
        graph("Tokens generated per second", "Language models only: tokens generated per second.",
              target(f"sum by (model) (rate(ray_raylift_serve_tokens_generated_total"
                     f"{{{APP_MODEL}}}[$__rate_interval]))", "{{model}}"),
              width=8),
        stat("Model load time", "Seconds each replica took to load (and quantize) its model.",
             target(f"max by (model, version) "
                    f"(ray_raylift_serve_model_load_seconds{{{APP_MODEL}}})",
                    "{{model}} v{{version}}"),
             unit="s", decimals=2),
        stat("Quantized", "Whether the replicas serve an int8 model.",
             target(f"max by (model, version) (ray_raylift_serve_quantized{{{APP_MODEL}}})",
                    "{{model}} v{{version}}"),
             mappings={0: "fp32", 1: "int8"}),
    ]
    # fmt: on
    return dashboard(
        "raylift-serving",
        "raylift / Serving",
        "raylift served models: traffic, errors, latency, replicas and model internals.",
        [
            query_variable(
                "application",
                "Application",
                "label_values(ray_raylift_serve_requests_total, application)",
            ),
            query_variable(
                "deployment",
                "Deployment",
                'label_values(ray_serve_deployment_replica_healthy{application=~"$application"}, '
                "deployment)",
                description="All deployments of the application: the ingress and the models.",
            ),
            query_variable(
                "model",
                "Model",
                "label_values(ray_raylift_serve_requests_total"
                '{application=~"$application"}, model)',
            ),
        ],
        panels,
    )


# --- Cluster ---------------------------------------------------------------------------------

NODE = 'instance=~"$instance"'


def _per_node(metric: str) -> str:
    return f"max by (instance) ({metric}{{{NODE}}})"


def cluster() -> dict[str, Any]:
    cpus = f'sum(ray_resources{{Name="CPU",{NODE}}})'
    cpus_used = f'sum(ray_resources{{Name="CPU",State="USED",{NODE}}})'
    disk_used = _per_node("ray_node_disk_usage")
    # fmt: off
    panels = [
        row("Overview"),
        stat("Nodes", "Ray nodes reporting metrics.",
             target(f"count({_per_node('ray_node_cpu_count')})", "nodes")),
        stat("CPUs (Ray)", "Logical CPUs the cluster offers to Ray tasks and actors.",
             target(cpus, "CPUs")),
        stat("CPUs in use (Ray)", "Logical CPUs reserved by tasks and actors now.",
             target(f"{cpus_used} or 0 * {cpus}", "in use")),
        stat("Memory used", "RAM used on the nodes, as a share of their total.",
             target(f"100 * sum({_per_node('ray_node_mem_used')}) / "
                    f"sum({_per_node('ray_node_mem_total')})", "memory"),
             unit="percent", red=90, decimals=1),
        stat("Object store memory", "Bytes in Ray's object store (all locations).",
             target(f"sum(ray_object_store_memory{{{NODE}}})", "object store"), unit="bytes"),
        stat("GPUs (Ray)", "GPU only: logical GPUs the cluster offers to Ray.",
             target(f'sum(ray_resources{{Name="GPU",{NODE}}})', "GPUs")),
        row("Utilisation"),
        graph("CPU utilisation by node", "Physical CPU utilisation of each node.",
              target(_per_node("ray_node_cpu_utilization"), "{{instance}}"),
              unit="percent", minimum=0, maximum=100),
        graph("Memory used by node", "RAM used on each node, as a share of its total.",
              target(f"100 * {_per_node('ray_node_mem_used')} / "
                     f"{_per_node('ray_node_mem_total')}", "{{instance}}"),
              unit="percent", minimum=0, maximum=100),
        graph("Disk used by node", "Disk used on each node's Ray volume, as a share of its size.",
              target(f"100 * {disk_used} / ({disk_used} + {_per_node('ray_node_disk_free')})",
                     "{{instance}}"),
              unit="percent", minimum=0, maximum=100),
        graph("Network by node", "Bytes per second each node receives and sends.",
              target(_per_node("ray_node_network_receive_speed"), "{{instance}} received"),
              target(_per_node("ray_node_network_send_speed"), "{{instance}} sent"),
              unit="Bps"),
        row("Ray resources"),
        graph("Logical CPUs: in use and total",
              "Logical CPUs reserved by tasks and actors on each node, and the cluster's "
              "total: what the workloads hold.",
              target(f'sum by (instance) (ray_resources{{Name="CPU",State="USED",{NODE}}})',
                     "{{instance}} in use"),
              target(cpus, "total"),
              width=8),
        graph("Object store memory", "Bytes in Ray's object store, by location.",
              target(f"sum by (Location) (ray_object_store_memory{{{NODE}}})", "{{Location}}"),
              unit="bytes", width=8),
        graph("Actors by state", "Ray actors of the cluster by state (as the GCS counts them).",
              target('sum by (State) (ray_actors{Source="gcs"})', "{{State}}"), width=8),
        row("GPU"),
        graph("GPU utilisation", "GPU only: utilisation of each GPU of each node.",
              target(f"max by (instance, GpuIndex) (ray_node_gpus_utilization{{{NODE}}})",
                     "{{instance}} GPU {{GpuIndex}}"),
              unit="percent", minimum=0, maximum=100),
        graph("GPU memory used", "GPU only: memory used on each GPU of each node.",
              target(f"max by (instance, GpuIndex) (ray_node_gram_used{{{NODE}}})",
                     "{{instance}} GPU {{GpuIndex}}"),
              unit="mbytes"),
    ]
    # fmt: on
    return dashboard(
        "raylift-cluster",
        "raylift / Cluster",
        "The Ray cluster under raylift: nodes, utilisation, Ray's logical resources and GPUs.",
        [
            query_variable("instance", "Node", "label_values(ray_node_cpu_utilization, instance)"),
        ],
        panels,
    )


DASHBOARDS = {
    "raylift-training.json": training,
    "raylift-tuning.json": tuning,
    "raylift-serving.json": serving,
    "raylift-cluster.json": cluster,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2) + "\n"


def main() -> None:
    for name, build in DASHBOARDS.items():
        (HERE / name).write_text(render(build), encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
