"""The KubeRay manifests under cluster/kuberay, checked offline against the real schemas.

KubeRay resources against KubeRay's CRDs (../shared/kuberay-crds, unknown fields rejected)
and the operator's own checks; core objects and pod templates against Kubernetes'
schemas (kubernetes-validate); the RayService's serveConfigV2 against ServeDeploySchema
and the output of ``raylift serve --emit-config``; the job specs the RayJobs name exist
and validate with the worker bounds of their clusters; the committed files are what
``raylift cluster manifests`` renders. The launcher YAMLs and the Dockerfile:
test_cluster_launcher.py. Nothing starts Ray.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from raylift.cli.manifests import manifests
from raylift.errors import UsageError
from raylift.ops.manifests import WORKDIR, ManifestOptions, render
from raylift.testing.k8s_schemas import (
    PROMETHEUS_CRDS,
    as_pod_template,
    cluster_specs,
    core_errors,
    crd_errors,
    kuberay_errors,
    load_docs,
    pod_templates,
)

ROOT = Path(__file__).resolve().parents[3]
KUBERAY = ROOT / "cluster" / "kuberay"
DOCKERFILE = ROOT / "cluster" / "docker" / "Dockerfile"
RAY_KINDS = ("RayCluster", "RayJob", "RayService")
# The committed sets and the options they were rendered with.
SETS = {
    "gpu": ["--storage", "s3://raylift-example/raylift"],
    "dev": [
        "--storage", "/mnt/raylift", "--storage-claim", "raylift-storage",
        "--gpus-per-worker", "0", "--cpu-workers", "1:2",
        "--cpu-worker-resources", "2,4Gi", "--head-resources", "1,4Gi",
    ],
}  # fmt: skip
GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Each set rendered now by `raylift cluster manifests`, by file name."""
    found = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        for name, args in SETS.items():
            out = tmp_path_factory.mktemp(name)
            result = CliRunner().invoke(manifests, [*args, "--out", str(out)])
            assert result.exit_code == 0, result.output
            found[name] = {p.name: p.read_text() for p in sorted(out.iterdir())}
    return found


@pytest.fixture(scope="module")
def committed() -> dict[str, list[dict[str, Any]]]:
    """The committed documents of each set."""
    return {
        name: [doc for path in sorted((KUBERAY / name).glob("*.yaml")) for doc in load_docs(path)]
        for name in SETS
    }


def _docs(committed: dict[str, list[dict[str, Any]]], kinds: tuple[str, ...]) -> list[Any]:
    return [doc for docs in committed.values() for doc in docs if doc["kind"] in kinds]


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (group, container)
        for group, template in pod_templates(spec)
        for container in template["spec"]["containers"]
    ]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def test_committed_manifests_are_the_renderers_output(
    rendered: dict[str, dict[str, str]],
) -> None:
    for name, files in rendered.items():
        folder = KUBERAY / name
        command = shlex.join(["raylift", "cluster", "manifests", *SETS[name], "--out", str(folder)])
        assert sorted(p.name for p in folder.glob("*.yaml")) == sorted(files), command
        for file, text in files.items():
            assert (folder / file).read_text() == text, f"{folder / file} is stale: {command}"


def test_kuberay_resources_validate_against_the_crds(committed: dict[str, Any]) -> None:
    docs = _docs(committed, RAY_KINDS)
    assert sorted({d["kind"] for d in docs}) == sorted(RAY_KINDS)
    for doc in docs:
        assert crd_errors(doc) == []
        assert kuberay_errors(doc) == []


def test_crd_validation_rejects_what_the_api_server_would(committed: dict[str, Any]) -> None:
    cluster = next(d for d in committed["gpu"] if d["kind"] == "RayCluster")

    def broken(change: Any) -> dict[str, Any]:
        doc = copy.deepcopy(cluster)
        change(doc["spec"])
        return doc

    group = lambda spec: spec["workerGroupSpecs"][0]  # noqa: E731
    container = lambda spec: group(spec)["template"]["spec"]["containers"][0]  # noqa: E731
    typo = broken(lambda s: group(s).update(minReplica=1))
    assert any("minReplica" in e for e in crd_errors(typo))
    nested = broken(lambda s: container(s).update(imagePullPolicyy="Always"))
    assert any("imagePullPolicyy" in e for e in crd_errors(nested))
    wrong_type = broken(lambda s: group(s).update(maxReplicas="2"))
    assert any("maxReplicas" in e for e in crd_errors(wrong_type))
    port = {"name": "metrics-2", "containerPort": 8080}
    duplicate = broken(lambda s: container(s)["ports"].append(port))
    assert any("duplicate" in e for e in crd_errors(duplicate))
    bad_auth = broken(lambda s: s["authOptions"].update(mode="tokens"))
    assert any("authOptions.mode" in e for e in crd_errors(bad_auth))
    inverted = broken(lambda s: group(s).update(minReplicas=3, replicas=3))
    assert any("minReplicas 3 > maxReplicas" in e for e in kuberay_errors(inverted))
    old_ray = broken(lambda s: s.update(rayVersion="2.50.0"))
    assert any("rayVersion >= 2.52.0" in e for e in kuberay_errors(old_ray))


def test_core_objects_and_pod_templates_validate_with_kubernetes_validate(
    committed: dict[str, Any],
) -> None:
    core = _docs(committed, ("ServiceAccount", "PersistentVolumeClaim"))
    assert {d["kind"] for d in core} == {"ServiceAccount", "PersistentVolumeClaim"}
    for doc in core:
        assert core_errors(doc) == []
    templates = [
        t for doc in _docs(committed, RAY_KINDS) for _, s in cluster_specs(doc)
        for _, t in pod_templates(s)
    ]  # fmt: skip
    assert len(templates) >= 20
    for template in templates:
        assert core_errors(as_pod_template(template)) == []
    bad = copy.deepcopy(templates[0])
    bad["spec"]["containers"][0]["resource"] = bad["spec"]["containers"][0].pop("resources")
    assert core_errors(as_pod_template(bad))


def test_token_auth_comes_from_a_secret_never_a_literal(committed: dict[str, Any]) -> None:
    for doc in _docs(committed, RAY_KINDS):
        for where, spec in cluster_specs(doc):
            assert spec["authOptions"] == {"mode": "token", "secretName": "raylift-ray-token"}
            assert spec["rayVersion"] == "2.60.0", where
            for _, container in _containers(spec):
                for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAYLIFT_API_KEYS"):
                    item = _env(container).get(name)
                    assert item is None or "value" not in item, (where, name)
    secrets = re.compile(r"(auth_token|RAY_AUTH_TOKEN)\s*[:=]\s*['\"]?\w{8,}")
    for path in [
        *KUBERAY.rglob("*.yaml"),
        ROOT / "cluster" / "aws.yaml",
        ROOT / "cluster" / "gcp.yaml",
    ]:
        assert not secrets.search(path.read_text()), path


def test_gpu_worker_groups_are_elastic_and_placed_on_gpu_and_spot_nodes(
    committed: dict[str, Any],
) -> None:
    docs = [d for d in committed["gpu"] if d["kind"] in ("RayCluster", "RayJob")]
    gpu_specs = [s for d in docs for _, s in cluster_specs(d) if "gpu" in _groups(s)]
    assert len(gpu_specs) == 2  # the RayCluster and the training RayJob
    for spec in gpu_specs:
        assert spec["enableInTreeAutoscaling"] is True
        groups = _groups(spec)
        assert any(g["minReplicas"] < g["maxReplicas"] for g in groups.values() if _gpus(g))
        for name in ("gpu", "gpu-spot"):
            pod = groups[name]["template"]["spec"]
            resources = pod["containers"][0]["resources"]
            assert resources["limits"][GPU] == resources["requests"][GPU] == 1
            assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        spot = groups["gpu-spot"]["template"]["spec"]
        assert spot["nodeSelector"] == {"eks.amazonaws.com/capacityType": "SPOT"}
        on_demand = groups["gpu"]["template"]["spec"]["affinity"]["nodeAffinity"]
        term = on_demand["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        assert term["matchExpressions"][0]["operator"] == "NotIn"
        assert _gpus(groups["cpu"]) == 0


def test_rayjobs_run_shipped_specs_with_their_clusters_bounds(committed: dict[str, Any]) -> None:
    from raylift.cli.main import cli
    from raylift.specs import load_spec
    from raylift.tuning.sweep import load_sweep

    dockerfile = DOCKERFILE.read_text()
    assert (
        f"WORKDIR {WORKDIR}\n" in dockerfile and "COPY --chown=1000:100 jobs ./jobs" in dockerfile
    )
    jobs = _docs(committed, ("RayJob",))
    assert len(jobs) == 4
    for job in jobs:
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[0] == "raylift" and argv[1] in ("train", "tune"), argv
        path = ROOT / argv[2]
        assert path.is_file(), f"{job['metadata']['name']} runs {argv[2]}, which does not exist"
        assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["working_dir"] == WORKDIR
        overrides = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]
        spec = job["spec"]["rayClusterSpec"]
        storage = _env(_containers(spec)[0][1])["RAYLIFT_STORAGE_PATH"]["value"]
        if argv[1] == "tune":
            assert load_sweep(str(path), overrides).sweep.storage.path == storage
            continue
        loaded = load_spec(path, overrides)
        assert loaded.storage.path == storage
        assert (loaded.scaling.min_workers, loaded.scaling.max_workers) == _train_bounds(spec)
        assert loaded.scaling.use_gpu == any(_gpus(g) for g in _groups(spec).values())
        if "://" in storage:  # a path storage is only writable inside the cluster
            args = ["validate", str(path), *[x for o in overrides for x in ("--set", o)]]
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 0, result.output


def test_rayservice_serves_the_emit_config_behind_haproxy(
    committed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.serve.schema import ServeDeploySchema

    from raylift.cli.main import cli

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RAYLIFT_API_KEYS", "a-test-key")
    out = tmp_path / "digits-serve.yaml"
    args = ["serve", "serve/digits.yaml", "--emit-config", str(out)]
    for item in ("storage.path=s3://raylift-example/raylift", "host=0.0.0.0", "port=8000"):
        args += ["--set", item]
    args += ["--set", "auth.api_keys_env=RAYLIFT_API_KEYS"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    services = {
        name: next(d for d in docs if d["kind"] == "RayService") for name, docs in committed.items()
    }
    assert yaml.safe_load(services["gpu"]["spec"]["serveConfigV2"]) == yaml.safe_load(
        out.read_text()
    )
    for name, service in services.items():
        config = yaml.safe_load(service["spec"]["serveConfigV2"])
        ServeDeploySchema.model_validate(config)
        assert config["http_options"] == {"host": "0.0.0.0", "port": 8000}
        cluster = service["spec"]["rayClusterConfig"]
        storage = _env(_containers(cluster)[0][1])["RAYLIFT_STORAGE_PATH"]["value"]
        for app in config["applications"]:
            assert app["args"]["spec"]["auth"]["api_keys_env"] == "RAYLIFT_API_KEYS"
            for model in app["args"]["spec"]["models"]:
                assert model["model"]["path"].startswith(storage.rstrip("/") + "/"), name
        for group, container in _containers(cluster):
            env = _env(container)
            assert env["RAY_SERVE_ENABLE_HA_PROXY"] == {
                "name": "RAY_SERVE_ENABLE_HA_PROXY",
                "value": "1",
            }
            keys = env["RAYLIFT_API_KEYS"]["valueFrom"]["secretKeyRef"]
            assert keys == {"name": "raylift-api-keys", "key": "keys"}, (name, group)
            assert {"name": "serve", "containerPort": 8000} in container["ports"]
            if "://" not in storage:
                assert {"name": "storage", "mountPath": storage} in container["volumeMounts"]


def test_monitoring_scrapes_rays_metrics_ports_and_ships_the_alert_rules(
    committed: dict[str, Any],
) -> None:
    rules = yaml.safe_load((ROOT / "cluster/prometheus/rules/raylift-alerts.yml").read_text())
    static = (ROOT / "cluster/prometheus/prometheus-static.yml").read_text()
    for name, docs in committed.items():
        monitors = [d for d in docs if d["kind"] == "PodMonitor"]
        assert {m["metadata"]["name"] for m in monitors} == {
            "raylift-ray-head",
            "raylift-ray-worker",
        }
        rule = next(d for d in docs if d["kind"] == "PrometheusRule")
        assert rule["spec"]["groups"] == rules["groups"]
        specs = [s for d in docs if d["kind"] in RAY_KINDS for _, s in cluster_specs(d)]
        for monitor in monitors:
            assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
            selector = dict(monitor["spec"]["selector"]["matchLabels"])
            role = selector.pop("ray.io/node-type")  # KubeRay labels every pod with it
            for spec in specs:
                for group, template in pod_templates(spec):
                    if (group == "head") != (role == "head"):
                        continue
                    assert selector.items() <= template["metadata"]["labels"].items()
                    ports = {
                        p["name"]: p["containerPort"]
                        for p in template["spec"]["containers"][0]["ports"]
                    }
                    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                        assert endpoint["port"] in ports, (name, group, endpoint["port"])
                        assert (
                            f":{ports[endpoint['port']]}" in static
                        )  # the same ports as cluster/prometheus


@pytest.mark.skipif(
    not PROMETHEUS_CRDS.is_dir(),
    reason=f"no Prometheus operator CRDs at {PROMETHEUS_CRDS} ($RAYLIFT_PROMETHEUS_CRDS); "
    "the structure is checked by test_monitoring_scrapes_rays_metrics_ports...",
)
def test_monitoring_validates_against_the_prometheus_operator_crds(
    committed: dict[str, Any],
) -> None:
    for doc in _docs(committed, ("PodMonitor", "PrometheusRule")):
        assert crd_errors(doc) == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--storage", "runs"], "--storage"),
        (["--storage", "https://bucket/runs"], "--storage"),
        (["--storage", "s3://b/r", "--gpu-workers", "3:2"], "--gpu-workers"),
        (
            ["--storage", "s3://b/r", "--gpu-workers", "0:2", "--spot-gpu-workers", "0:1"],
            "--gpu-workers",
        ),
        (["--storage", "/mnt/r", "--storage-claim", "c"], "--spot-label"),
        (["--storage", "s3://b/r", "--name", "Raylift_Prod"], "--name"),
        (["--storage", "s3://b/r", "--gpu-worker-resources", "8,lots"], "--gpu-worker-resources"),
        (["--storage", "s3://b/r", "--serve-set", "host=127.0.0.1"], "--serve-spec"),
        (["--storage", "s3://b/r", "--train-spec", "jobs/nope.yaml"], "jobs/nope.yaml"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    args: list[str], option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(manifests, args)
    assert result.exit_code == 2, result.output
    assert option in result.output


def test_renderer_is_a_pure_function_with_errors_naming_the_fix() -> None:
    files = render(ManifestOptions(storage="gs://bucket/raylift", spot_gpu_workers=(0, 3)))
    cluster = files["raycluster.yaml"][0]["spec"]
    spot = _groups(cluster)["gpu-spot"]["template"]["spec"]
    assert spot["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert any(t["key"] == "cloud.google.com/gke-spot" for t in spot["tolerations"])
    assert "rayservice.yaml" not in files  # no serve config given
    with pytest.raises(UsageError, match=r"--cpu-workers: training would start with 0 workers"):
        render(ManifestOptions(storage="s3://b/r", gpus_per_worker=0))


def _groups(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in spec.get("workerGroupSpecs", [])}


def _gpus(group: dict[str, Any]) -> int:
    return int(group["template"]["spec"]["containers"][0]["resources"]["limits"].get(GPU, 0))


def _train_bounds(spec: dict[str, Any]) -> tuple[int, int]:
    """Ray Train workers a cluster holds: one per GPU, or per CPU without GPU groups."""
    groups = list(_groups(spec).values())
    if any(_gpus(g) for g in groups):
        slots = [(g, _gpus(g)) for g in groups]
    else:
        cpu = lambda g: int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])  # noqa: E731
        slots = [(g, cpu(g)) for g in groups]
    low = sum(g["minReplicas"] * n for g, n in slots)
    return low, sum(g["maxReplicas"] * n for g, n in slots)
