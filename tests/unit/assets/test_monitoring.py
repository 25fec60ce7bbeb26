"""Grafana dashboards, provisioning, Prometheus configs and alert rules, checked without Ray.

Every metric a dashboard or alert names must be one raylift's code defines (found in
the sources under platform/, with Ray's ``ray_`` prefix and ``_total`` / ``_bucket``
suffixes) or one of ``RAY_METRICS``, each verified against the installed Ray package.
The promtool checks need Debian's ``prometheus`` package (skipped without it).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from raylift.testing import dashboard_queries as queries

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "dashboards"
PROMETHEUS = ROOT / "cluster" / "prometheus"
RULES = PROMETHEUS / "rules" / "raylift-alerts.yml"
RULE_TESTS = PROMETHEUS / "rules" / "raylift-alerts.test.yml"
SOURCES = ROOT / "platform" / "raylift"

EXPECTED = {
    "raylift-training.json": ("raylift-training", {"run"}),
    "raylift-tuning.json": ("raylift-tuning", {"sweep"}),
    "raylift-serving.json": ("raylift-serving", {"application", "deployment", "model"}),
    "raylift-cluster.json": ("raylift-cluster", {"instance"}),
}
DATASOURCE_UID = "${datasource}"

# Ray's own metrics the dashboards and alerts use: exported name -> (file under the
# installed ``ray`` package, how it is verified there). "defined": the file creates a
# metric of that name and kind (the un-prefixed name passed to Counter/Gauge/Histogram).
# "documented": a C++ metric, named by Ray's own Grafana dashboards in that file.
_SERVE_STATE = "serve/_private/deployment_state.py"
_SERVE_REPLICA = "serve/_private/replica.py"
_REPORTER = "dashboard/modules/reporter/reporter_agent.py"
_RAY_DASHBOARD = "dashboard/modules/metrics/dashboards/default_dashboard_panels.py"
RAY_METRICS = {
    "ray_serve_deployment_replica_healthy": (_SERVE_STATE, "defined"),
    "ray_serve_deployment_status": (_SERVE_STATE, "defined"),
    "ray_serve_deployment_request_counter_total": (_SERVE_REPLICA, "defined"),
    "ray_serve_deployment_error_counter_total": (_SERVE_REPLICA, "defined"),
    "ray_serve_deployment_processing_latency_ms_bucket": (_SERVE_REPLICA, "defined"),
    "ray_serve_replica_processing_queries": (_SERVE_REPLICA, "defined"),
    "ray_node_cpu_count": (_REPORTER, "defined"),
    "ray_node_cpu_utilization": (_REPORTER, "defined"),
    "ray_node_mem_used": (_REPORTER, "defined"),
    "ray_node_mem_total": (_REPORTER, "defined"),
    "ray_node_disk_usage": (_REPORTER, "defined"),
    "ray_node_disk_free": (_REPORTER, "defined"),
    "ray_node_network_receive_speed": (_REPORTER, "defined"),
    "ray_node_network_send_speed": (_REPORTER, "defined"),
    "ray_node_gpus_utilization": (_REPORTER, "defined"),
    "ray_node_gram_used": (_REPORTER, "defined"),
    "ray_resources": (_RAY_DASHBOARD, "documented"),
    "ray_object_store_memory": (_RAY_DASHBOARD, "documented"),
    "ray_actors": (_RAY_DASHBOARD, "documented"),
}
# Labels every scraped series may carry besides its tags: Prometheus' target labels and
# the ones Ray's metrics agent adds.
COMMON_LABELS = {"instance", "job", "SessionName", "Component", "WorkerId", "NodeAddress"}
SERVE_LABELS = {"application", "deployment", "replica"}
GPU_METRIC = re.compile(
    r"ray_raylift_train_gpu_|ray_raylift_train_mfu|ray_node_gpus_|ray_node_gram_|Name=\"GPU\""
)
KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


generate = _load("raylift_dashboards_generate", DASHBOARDS / "generate.py")


def _boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS.glob("*.json")}


BOARDS = _boards()


def _all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


# --- PromQL: metric names and label matchers ---------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2", "by", "without"}
_KEYWORDS |= {"on", "ignoring", "group_left", "group_right"}
_SELECTOR = re.compile(r"\b(ray_\w+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, keywords, labels or numbers)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENT.findall(text) if name not in _KEYWORDS}


def matcher_labels(expr: str) -> set[tuple[str, str]]:
    """(metric, label) of every label matcher written right after a metric name."""
    return {
        (metric, label)
        for metric, body in _SELECTOR.findall(expr)
        for label in _MATCHER.findall(body)
    }


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (model, le) (rate(ray_a_bucket{code=~"5..",x="y"}'
        "[$__rate_interval]))) / on(model) group_left max without (le) (ray_b offset 10m) "
        "or 0 * count(ray_c) > bool 1e3 and vector(1)"
    )
    assert metric_names(expr) == {"ray_a_bucket", "ray_b", "ray_c"}
    assert matcher_labels(expr) == {("ray_a_bucket", "code"), ("ray_a_bucket", "x")}


def _every_expr() -> list[tuple[str, str]]:
    """(where, expr) of every dashboard target, dashboard variable query and alert rule."""
    found = []
    for name, board in BOARDS.items():
        for panel in _all_panels(board):
            for query in panel.get("targets", []):
                found.append((f"{name}: {panel['title']}", query["expr"]))
        for variable in board["templating"]["list"]:
            if variable.get("type") == "query":
                selector, label = queries.parse_label_values(queries.variable_query_text(variable))
                assert selector, f"{name}: ${variable['name']} must name a metric"
                # the label it lists, written as a matcher so that its name is checked too
                matcher = f'{label}=~".+"'
                if selector.endswith("}"):
                    expr = f"{selector[:-1].rstrip().rstrip(',')},{matcher}}}"
                else:
                    expr = f"{selector}{{{matcher}}}"
                found.append((f"{name}: ${variable['name']}", expr))
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    return found


# --- what raylift's code defines ---------------------------------------------------------------


@dataclass(frozen=True)
class Defined:
    name: str  # as passed to Ray, without the ray_ prefix
    kind: str  # counter, gauge, histogram
    labels: frozenset[str] | None  # its tag keys; None when not a literal
    serve: bool  # made through ray.serve.metrics (application, deployment, replica added)
    exact: bool  # False: one of the names an f-string the test could not resolve may take
    where: str

    def exported(self) -> list[str]:
        return [f"ray_{self.name}{suffix}" for suffix in SUFFIXES[self.kind]]


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _module_value(tree: ast.Module, name: str) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return node.value
    return None


def _local_value(node: ast.AST, name: str, parents: dict[ast.AST, ast.AST]) -> ast.expr | None:
    """The value last assigned to ``name`` in the function around ``node``."""
    scope = node
    while scope in parents and not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        scope = parents[scope]
    value = None
    for inner in ast.walk(scope):
        if isinstance(inner, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in inner.targets
        ):
            value = inner.value
    return value


def _strings(
    node: ast.expr | None, tree: ast.Module, at: ast.AST, parents: dict[ast.AST, ast.AST]
) -> list[str] | None:
    """The strings of a tuple/list literal, following names and ``*CONSTANT``; else None."""
    if isinstance(node, ast.Name):
        node = _local_value(at, node.id, parents) or _module_value(tree, node.id)
    if not isinstance(node, ast.Tuple | ast.List):
        return None
    found: list[str] = []
    for element in node.elts:
        if isinstance(element, ast.Constant) and isinstance(element.value, str):
            found.append(element.value)
        elif isinstance(element, ast.Starred):
            inner = _strings(element.value, tree, at, parents)
            if inner is None:
                return None
            found.extend(inner)
        else:
            return None
    return found


def _keys(
    node: ast.expr | None,
    tree: ast.Module,
    at: ast.AST,
    parents: dict[ast.AST, ast.AST],
    depth: int = 0,
) -> list[str] | None:
    """Keys of a dict expression: a literal, a local or module name, ``X.items()``,
    ``X.keys()``, ``a | b``, or a comprehension keyed by its loop variable; else None."""
    if node is None or depth > 8:
        return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("items", "keys")
    ):
        node = node.func.value
    if isinstance(node, ast.Name):
        node = _local_value(at, node.id, parents) or _module_value(tree, node.id)
        return _keys(node, tree, at, parents, depth + 1)
    if isinstance(node, ast.Dict):
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        return keys if len(keys) == len(node.keys) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left = _keys(node.left, tree, at, parents, depth + 1)
        right = _keys(node.right, tree, at, parents, depth + 1)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.DictComp) and isinstance(node.key, ast.Name):
        loop = node.generators[0]
        first = loop.target.elts[0] if isinstance(loop.target, ast.Tuple) else loop.target
        if isinstance(first, ast.Name) and first.id == node.key.id:
            return _keys(loop.iter, tree, at, parents, depth + 1)
    return None


def _names(
    arg: ast.expr, tree: ast.Module, at: ast.AST, parents: dict[ast.AST, ast.AST]
) -> tuple[list[str], bool]:
    """The metric names an argument can take, and whether they are exact.

    A string literal, or an f-string over the keys of the dict a comprehension loops
    over. Any other f-string: the prefix with every identifier-like string of the
    module (not exact).
    """
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value], True
    assert isinstance(arg, ast.JoinedStr), f"metric name at line {arg.lineno} is not a string"
    parts = arg.values
    variables = [p.value for p in parts if isinstance(p, ast.FormattedValue)]

    def fill(key: str) -> str:
        return "".join(key if isinstance(p, ast.FormattedValue) else str(p.value) for p in parts)  # type: ignore[attr-defined]

    if len(variables) == 1 and isinstance(variables[0], ast.Name):
        node: ast.AST = at
        while node in parents:  # the comprehension whose loop binds the variable
            node = parents[node]
            if not isinstance(node, ast.DictComp | ast.ListComp | ast.SetComp | ast.GeneratorExp):
                continue
            for loop in node.generators:
                target = loop.target
                first = target.elts[0] if isinstance(target, ast.Tuple) else target
                if isinstance(first, ast.Name) and first.id == variables[0].id:
                    keys = _keys(loop.iter, tree, at, parents)
                    if keys is not None:
                        return [fill(key) for key in keys], True
    words = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier()
    }
    return [fill(word) for word in sorted(words)], False


def defined_in(path: Path) -> list[Defined]:
    """Metrics a Python file creates through Ray's Counter/Gauge/Histogram."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = _parents(tree)
    serve_metrics = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "ray.serve"
        and any(a.name == "metrics" for a in node.names)
        for node in ast.walk(tree)
    )
    found = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        kind = KINDS.get(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
        if kind is None:
            continue
        name_arg = call.args[0] if call.args else None
        name_arg = next((k.value for k in call.keywords if k.arg == "name"), name_arg)
        if name_arg is None:
            continue
        tags = next((k.value for k in call.keywords if k.arg == "tag_keys"), None)
        labels = _strings(tags, tree, call, parents) if tags is not None else []
        serve = (
            serve_metrics
            and isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "metrics"
        )
        names, exact = _names(name_arg, tree, call, parents)
        for name in names:
            found.append(
                Defined(
                    name=name,
                    kind=kind,
                    labels=None if labels is None else frozenset(labels),
                    serve=serve,
                    exact=exact,
                    where=f"{path.relative_to(path.parents[2])}:{call.lineno}",
                )
            )
    return found


@cache
def raylift_metrics() -> dict[str, Defined]:
    """Exported name -> definition, for every metric under platform/raylift."""
    found: dict[str, Defined] = {}
    for path in sorted(SOURCES.rglob("*.py")):
        if "metrics" not in path.read_text(encoding="utf-8"):
            continue
        for metric in defined_in(path):
            for exported in metric.exported():
                found[exported] = metric
    return found


@cache
def ray_package() -> Path:
    spec = importlib.util.find_spec("ray")  # finds the package without importing it
    assert spec is not None and spec.origin is not None, "ray is not installed"
    return Path(spec.origin).parent


def test_code_metrics_are_found() -> None:
    metrics = raylift_metrics()
    serve = metrics["ray_raylift_serve_requests_total"]
    assert serve.kind == "counter" and serve.serve
    assert serve.labels == {"model", "version", "code"}
    assert "ray_raylift_serve_request_latency_ms_bucket" in metrics
    assert metrics["ray_raylift_sweep_trials"].labels == {"sweep", "state"}
    assert "ray_raylift_train_step" in metrics  # a name built in an f-string over a dict


@pytest.mark.parametrize("exported", sorted(RAY_METRICS))
def test_ray_metric_exists_in_installed_ray(exported: str) -> None:
    relative, how = RAY_METRICS[exported]
    path = ray_package() / relative
    assert path.is_file(), f"{relative} is not in the installed ray package"
    if how == "documented":
        assert re.search(rf"\b{exported}\b", path.read_text(encoding="utf-8")), (
            f"{exported} is not named in {relative}"
        )
        return
    names = {n for metric in defined_in(path) for n in metric.exported()}
    assert exported in names, (
        f"{relative} defines no metric exported as {exported} "
        f"(similar: {sorted(n for n in names if n.startswith(exported[:12]))})"
    )


def test_every_referenced_metric_is_defined() -> None:
    """Each metric name in dashboards and alerts: raylift's code or a verified Ray metric."""
    code = raylift_metrics()
    unknown = {}
    for where, expr in _every_expr():
        for name in metric_names(expr):
            if name not in code and name not in RAY_METRICS:
                unknown.setdefault(name, where)
    assert not unknown, "metrics neither defined by platform/raylift nor verified in Ray: " + (
        ", ".join(f"{name} ({where})" for name, where in sorted(unknown.items()))
    )


def test_label_matchers_of_raylift_metrics_name_their_tags() -> None:
    code = raylift_metrics()
    wrong = []
    for where, expr in _every_expr():
        for metric, label in matcher_labels(expr):
            defined = code.get(metric)
            if defined is None or defined.labels is None:
                continue
            allowed = set(defined.labels) | COMMON_LABELS
            allowed |= SERVE_LABELS if defined.serve else set()
            allowed |= {"le"} if metric.endswith("_bucket") else set()
            if label not in allowed:
                wrong.append(f"{where}: {metric} has no label {label!r} ({defined.where})")
    assert not wrong, "\n".join(wrong)


def test_every_raylift_metric_is_on_a_dashboard() -> None:
    used = {name for _, expr in _every_expr() for name in metric_names(expr)}
    defined = {m.name: m for m in raylift_metrics().values()}
    missing = [
        f"{name} ({m.where})" for name, m in sorted(defined.items()) if not set(m.exported()) & used
    ]
    assert not missing, "metrics no dashboard shows: " + ", ".join(missing)


# --- dashboards --------------------------------------------------------------------------------


def test_dashboard_files() -> None:
    assert set(BOARDS) == set(EXPECTED)
    uids = [board["uid"] for board in BOARDS.values()]
    assert len(set(uids)) == len(uids)


def test_dashboards_are_what_generate_writes() -> None:
    for name, build in generate.DASHBOARDS.items():
        written = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert written == generate.render(build), (
            f"dashboards/{name} differs from dashboards/generate.py: edit generate.py and run "
            "`python dashboards/generate.py`"
        )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_structure(name: str) -> None:
    board = BOARDS[name]
    uid, variables = EXPECTED[name]
    assert board["uid"] == uid
    assert board["schemaVersion"] >= 39
    assert board["time"] == {"from": "now-1h", "to": "now"}
    assert board["refresh"] == "10s"
    assert board["title"] and board["id"] is None

    templating = board["templating"]["list"]
    source = [v for v in templating if v["name"] == "datasource"]
    assert len(source) == 1 and source[0]["type"] == "datasource"
    assert source[0]["query"] == "prometheus"
    assert variables <= {v["name"] for v in templating}
    for variable in templating:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE_UID, variable["name"]
            assert variable["datasource"]["type"] == "prometheus"
            assert variable["definition"] == queries.variable_query_text(variable)

    ids = [panel["id"] for panel in _all_panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells: set[tuple[int, int]] = set()
    for panel in _all_panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{name}: panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("description"), f"{name}: {panel['id']}"
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel.get("targets"), f"{name}: panel {panel['title']!r} has no targets"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for query in panel["targets"]:
            assert query["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert query["expr"].strip(), panel["title"]
        if any(GPU_METRIC.search(t["expr"]) for t in panel["targets"]):
            assert panel["description"].startswith("GPU only:"), (
                f"{name}: {panel['title']!r} shows GPU metrics; its description must start "
                "with 'GPU only:'"
            )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_template_variable_used_is_defined(name: str) -> None:
    board = BOARDS[name]
    defined = {v["name"] for v in board["templating"]["list"]}
    for query in queries.panel_queries(board):  # raises KeyError for an unknown variable
        assert "$" not in query.expr, query
    for query in queries.variable_queries(board):
        assert "$" not in query.query, query
    used = set()
    for _, expr in _every_expr():
        used |= set(re.findall(r"\$(\w+)", expr))
    assert defined - {"datasource"} <= used, "a template variable no query uses"


def test_dashboard_queries_substitutes_values() -> None:
    board = BOARDS["raylift-training.json"]
    exprs = [q.expr for q in queries.panel_queries(board, {"run": "digits-mlp"})]
    assert any('ray_raylift_train_step{run=~"digits-mlp"}' in e for e in exprs)
    tuning = queries.variable_defaults(BOARDS["raylift-tuning.json"])
    assert tuning["trial"] == "trial-.*" and tuning["sweep"] == ".*"
    optional = {q.panel for q in queries.panel_queries(board) if q.optional}
    assert optional == {
        "Tokens per second",
        "Model FLOPs utilisation",
        "GPU memory per rank",
        "GPU utilisation per rank",
    }
    assert queries.parse_label_values('label_values(up{a="b"}, job)') == ('up{a="b"}', "job")
    assert queries.parse_label_values("label_values(job)") == (None, "job")


# --- provisioning ------------------------------------------------------------------------------


def test_grafana_provisioning() -> None:
    sources = yaml.safe_load((DASHBOARDS / "provisioning/datasources/raylift.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "raylift-prometheus"
    assert source["url"] == "http://127.0.0.1:9090"
    providers = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/raylift.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "${RAYLIFT_DASHBOARDS}"


# --- Prometheus --------------------------------------------------------------------------------


def test_prometheus_configs_scrape_one_way_each() -> None:
    constants = (ray_package() / "_private" / "ray_constants.py").read_text(encoding="utf-8")
    sd_file = re.search(r'PROMETHEUS_SERVICE_DISCOVERY_FILE = "([^"]+)"', constants)
    assert sd_file, "Ray's service-discovery file name moved"
    discovered = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    static = yaml.safe_load((PROMETHEUS / "prometheus-static.yml").read_text())
    for config in (discovered, static):
        assert config["rule_files"] == ["rules/raylift-alerts.yml"]
        assert len(config["scrape_configs"]) == 1
    (job,) = discovered["scrape_configs"]
    assert "static_configs" not in job
    files = [f for sd in job["file_sd_configs"] for f in sd["files"]]
    assert files and all(Path(f).name == sd_file.group(1) for f in files)
    (job,) = static["scrape_configs"]
    assert "file_sd_configs" not in job and job["static_configs"]


def test_alert_rules_have_severity_and_text_and_tests() -> None:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    assert len(alerts) >= 6
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    fires, quiet = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts}
    assert names <= fires, f"alerts no test sees firing: {names - fires}"
    assert names <= quiet, f"alerts no test sees quiet: {names - quiet}"


def _promtool(*args: str | Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not on PATH (Debian: apt-get install prometheus)")
    done = subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-static.yml"])
def test_promtool_check_config(config: str) -> None:
    _promtool("check", "config", PROMETHEUS / config)


def test_promtool_check_rules() -> None:
    _promtool("check", "rules", RULES)


def test_promtool_test_rules() -> None:
    _promtool("test", "rules", RULE_TESTS)


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each panel and variable query (variables substituted) as a rule."""
    rules = []
    for board in BOARDS.values():
        for query in queries.panel_queries(board):
            rules.append({"record": f"dashboard:query_{len(rules)}", "expr": query.expr})
        for variable in queries.variable_queries(board):
            selector, _ = queries.parse_label_values(variable.query)
            rules.append({"record": f"dashboard:query_{len(rules)}", "expr": selector})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    _promtool("check", "rules", path)
