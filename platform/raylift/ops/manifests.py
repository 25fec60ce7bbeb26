"""KubeRay manifests for raylift, rendered from a few options (``raylift cluster manifests``).

``render(options)`` is a pure function (no Ray, no I/O) that returns
``{file name: [Kubernetes objects]}``:

- ``serviceaccount.yaml``: the pods' ServiceAccount (annotate it for S3/GCS access:
  IRSA's ``eks.amazonaws.com/role-arn`` or GKE's ``iam.gke.io/gcp-service-account``);
- ``storage.yaml``: a PersistentVolumeClaim, only when storage is a path on a volume;
- ``raycluster.yaml``: a long-lived RayCluster (CPU head, CPU workers, on-demand and
  spot GPU workers, in-tree autoscaling, token auth from a Secret);
- ``rayjob-train.yaml`` / ``rayjob-sweep.yaml``: ``raylift train`` / ``raylift tune`` on a
  cluster of their own, whose GPU worker groups are the spec's elastic min/max workers;
- ``rayservice.yaml``: the Serve config of ``raylift serve FILE --emit-config`` on a
  cluster with Serve's HAProxy ingress;
- ``monitoring.yaml``: PodMonitors for the Prometheus operator (Ray's metrics ports, as
  cluster/prometheus scrapes them) and raylift's alert rules as a PrometheusRule.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from raylift.errors import UsageError
from raylift.ops.kuberay import PART_OF, SERVE_PORT, Group, Placement, Pods, cluster_spec

WORKDIR = "/home/ray/raylift"  # jobs/ and serve/ in the image (cluster/docker/Dockerfile)
STORAGE_ENV = "RAYLIFT_STORAGE_PATH"
API_KEYS_ENV = "RAYLIFT_API_KEYS"
HAPROXY_ENV = "RAY_SERVE_ENABLE_HA_PROXY"
SPOT_LABELS = {
    "aws": ("eks.amazonaws.com/capacityType", "SPOT"),  # EKS managed node groups
    "gcp": ("cloud.google.com/gke-spot", "true"),
}
GKE_SPOT_TOLERATION = {
    "key": "cloud.google.com/gke-spot",
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}
WHERE = "raylift cluster manifests"
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 41  # KubeRay allows 47 characters for a RayJob or RayService; "-train" is 6


@dataclass(frozen=True)
class ManifestOptions:
    """Everything the manifests depend on; the defaults are the GPU production example."""

    storage: str
    image: str = "raylift:0.1.0-gpu"
    name: str = "raylift"
    gpus_per_worker: int = 1
    gpu_workers: tuple[int, int] = (1, 2)  # on-demand GPU pods
    spot_gpu_workers: tuple[int, int] = (0, 2)  # spot GPU pods on top of them
    cpu_workers: tuple[int, int] = (0, 2)
    head_cpus: int = 2
    head_memory: str = "8Gi"
    cpu_worker_cpus: int = 4
    cpu_worker_memory: str = "16Gi"
    gpu_worker_cpus: int = 8
    gpu_worker_memory: str = "32Gi"
    cloud: str = "auto"  # auto (from the storage URI) | aws | gcp | none
    spot_label: tuple[str, str] | None = None  # the node label of spot nodes
    service_account_annotations: tuple[tuple[str, str], ...] = ()
    storage_claim: str | None = None  # a PVC mounted at `storage` when it is a path
    token_secret: str = "raylift-ray-token"
    api_keys_secret: str | None = "raylift-api-keys"
    train_spec: str = "jobs/digits-mlp.yaml"
    sweep_spec: str | None = "jobs/sweeps/digits-asha.yaml"
    serve_config: Mapping[str, Any] | None = None
    alert_groups: Sequence[Mapping[str, Any]] | None = None
    monitor_labels: tuple[tuple[str, str], ...] = (("release", "prometheus"),)

    @property
    def resolved_cloud(self) -> str:
        if self.cloud != "auto":
            return self.cloud
        return {"s3": "aws", "gs": "gcp"}.get(self.storage.partition("://")[0], "none")


def render(options: ManifestOptions) -> dict[str, list[dict[str, Any]]]:
    """The manifests for ``options``, by file name (see the module docstring)."""
    check(options)
    o = options
    files: dict[str, list[dict[str, Any]]] = {"serviceaccount.yaml": [_service_account(o)]}
    if o.storage_claim:
        files["storage.yaml"] = [_claim(o)]
    files["raycluster.yaml"] = [
        _object("RayCluster", o.name, "cluster", _spec(o, _groups(o), serving=True))
    ]
    train = _job(o, f"{o.name}-train", "train", ["raylift", "train", o.train_spec])
    files["rayjob-train.yaml"] = [train]
    if o.sweep_spec:
        sweep = _job(o, f"{o.name}-sweep", "sweep", ["raylift", "tune", o.sweep_spec])
        files["rayjob-sweep.yaml"] = [sweep]
    if o.serve_config is not None:
        files["rayservice.yaml"] = [_service(o, o.serve_config)]
    files["monitoring.yaml"] = _monitoring(o)
    return files


def training_workers(o: ManifestOptions) -> tuple[int, int]:
    """Ray Train's (min, max) workers: one per GPU of the GPU groups (CPU-only: per CPU)."""
    if o.gpus_per_worker:
        low = (o.gpu_workers[0] + o.spot_gpu_workers[0]) * o.gpus_per_worker
        high = (o.gpu_workers[1] + o.spot_gpu_workers[1]) * o.gpus_per_worker
        return low, high
    return o.cpu_workers[0] * o.cpu_worker_cpus, o.cpu_workers[1] * o.cpu_worker_cpus


def train_overrides(o: ManifestOptions) -> list[str]:
    """The ``--set`` overrides of the training RayJob: storage and the elastic bounds."""
    low, high = training_workers(o)
    found = [f"storage.path={o.storage}", f"scaling.min_workers={low}"]
    found.append(f"scaling.max_workers={high}")
    if o.gpus_per_worker:
        found.append("scaling.use_gpu=true")
    return found


def sweep_overrides(o: ManifestOptions) -> list[str]:
    return [f"storage.path={o.storage}"]


def check(o: ManifestOptions) -> None:
    """UsageError (naming the option and the fix) for options that would not work."""
    if not DNS_LABEL.match(o.name) or len(o.name) > MAX_NAME:
        _fail("--name", f"{o.name!r} must be a DNS label (a-z, 0-9, -) of at most {MAX_NAME}")
    if not o.image or any(c.isspace() for c in o.image):
        _fail("--image", f"{o.image!r} is not an image reference; give REGISTRY/raylift:TAG")
    if o.cloud not in ("auto", "aws", "gcp", "none"):
        _fail("--cloud", f"{o.cloud!r} is not one of auto, aws, gcp, none")
    _check_storage(o)
    for option, bounds in (
        ("--gpu-workers", o.gpu_workers),
        ("--spot-gpu-workers", o.spot_gpu_workers),
        ("--cpu-workers", o.cpu_workers),
    ):
        if not 0 <= bounds[0] <= bounds[1]:
            _fail(option, f"{bounds[0]}:{bounds[1]} is not MIN:MAX with 0 <= MIN <= MAX")
    if o.gpus_per_worker < 0:
        _fail("--gpus-per-worker", f"{o.gpus_per_worker} GPUs; give 0 (CPU only) or more")
    for option, cpus, memory in (
        ("--head-resources", o.head_cpus, o.head_memory),
        ("--cpu-worker-resources", o.cpu_worker_cpus, o.cpu_worker_memory),
        ("--gpu-worker-resources", o.gpu_worker_cpus, o.gpu_worker_memory),
    ):
        if cpus < 1 or not QUANTITY.match(memory):
            _fail(option, f"{cpus},{memory}: give whole CPUs >= 1 and a memory like 16Gi")
    low = training_workers(o)[0]
    if low < 1:
        option = "--gpu-workers" if o.gpus_per_worker else "--cpu-workers"
        _fail(option, f"training would start with {low} workers; make MIN >= 1 (e.g. 1:4)")
    if o.gpus_per_worker and o.spot_gpu_workers[1] and _spot_label(o) is None:
        _fail(
            "--spot-label",
            "spot GPU workers need the node label that marks spot nodes (cloud 'none'); "
            "give --spot-label KEY=VALUE, or --spot-gpu-workers 0:0",
        )
    for option, spec in (("--train-spec", o.train_spec), ("--sweep-spec", o.sweep_spec)):
        if spec is not None and (spec.startswith("/") or ".." in spec.split("/")):
            _fail(option, f"{spec!r} must be a path inside the repository, like jobs/x.yaml")
    if o.serve_config is not None:
        _check_serve(o, o.serve_config)


def dump(documents: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """YAML documents (multi-line strings as literal blocks), after ``header`` comment lines."""
    lines = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    body = "---\n".join(
        yaml.dump(dict(d), Dumper=_Dumper, sort_keys=False, width=4096) for d in documents
    )
    return lines + body


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &anchors: every object reads on its own


def _literal(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal)


def _fail(option: str, message: str) -> None:
    raise UsageError(message, option=option)


def _check_storage(o: ManifestOptions) -> None:
    scheme, sep, rest = o.storage.partition("://")
    if sep:
        if scheme not in ("s3", "gs") or not rest.split("/")[0]:
            _fail("--storage", f"{o.storage!r}: give s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
        if o.storage_claim:
            _fail("--storage-claim", "a volume is only for a path storage; drop --storage-claim")
        return
    if not o.storage.startswith("/") or not o.storage_claim:
        _fail(
            "--storage",
            f"{o.storage!r} is not a place every pod can reach: give s3://BUCKET/PREFIX, "
            "gs://BUCKET/PREFIX, or an absolute path with --storage-claim PVC",
        )


def _check_serve(o: ManifestOptions, config: Mapping[str, Any]) -> None:
    http = config.get("http_options") or {}
    if http.get("host") != "0.0.0.0" or http.get("port", SERVE_PORT) != SERVE_PORT:
        _fail(
            "--serve-spec",
            f"the Serve config must listen on 0.0.0.0:{SERVE_PORT} in a pod (it has "
            f"{http.get('host')}:{http.get('port')}); render it with --serve-set host=0.0.0.0",
        )
    for app in config.get("applications") or []:
        spec = (app.get("args") or {}).get("spec") or {}
        keys_env = (spec.get("auth") or {}).get("api_keys_env")
        if o.api_keys_secret and keys_env != API_KEYS_ENV:
            _fail("--api-keys-secret", f"the serve spec must read its keys from {API_KEYS_ENV}")
        for model in spec.get("models") or []:
            path = str(model["model"]["path"])
            local = o.storage_claim and path.startswith(o.storage.rstrip("/") + "/")
            if "://" not in path and not local:
                _fail(
                    "--serve-spec",
                    f"model {model['name']!r} is at {path!r}, which the pods cannot read; "
                    "put it under the cluster's storage (--storage)",
                )


def _spot_label(o: ManifestOptions) -> tuple[str, str] | None:
    return o.spot_label or SPOT_LABELS.get(o.resolved_cloud)


def _groups(o: ManifestOptions, gpus: bool = True) -> list[Group]:
    groups = [Group("cpu", o.cpu_workers, o.cpu_worker_cpus, o.cpu_worker_memory)]
    if not (gpus and o.gpus_per_worker):
        return groups
    size = (o.gpu_worker_cpus, o.gpu_worker_memory, o.gpus_per_worker)
    groups.append(Group("gpu", o.gpu_workers, *size, spot=False))
    if o.spot_gpu_workers[1]:
        groups.append(Group("gpu-spot", o.spot_gpu_workers, *size, spot=True))
    return groups


def _spec(o: ManifestOptions, groups: list[Group], serving: bool, keys: bool = False) -> Any:
    env: list[dict[str, Any]] = [{"name": STORAGE_ENV, "value": o.storage}]
    if serving:
        # Serve's HAProxy ingress: 1.01 of a bare FastAPI server vs 0.42 with Serve's Python
        # proxy (benchmarks/serve.py). Cluster-wide, read when Ray starts: every container.
        env.append({"name": HAPROXY_ENV, "value": "1"})
    if keys and o.api_keys_secret:
        ref = {"secretKeyRef": {"name": o.api_keys_secret, "key": "keys"}}
        env.append({"name": API_KEYS_ENV, "valueFrom": ref})
    cloud = o.resolved_cloud
    placement = Placement(
        _spot_label(o), GKE_SPOT_TOLERATION if cloud == "gcp" and not o.spot_label else None
    )
    claim = (o.storage_claim, o.storage) if o.storage_claim else None
    pods = Pods(o.image, o.name, tuple(env), o.head_cpus, o.head_memory, placement, claim)
    return cluster_spec(pods, groups, o.token_secret)


def _job(o: ManifestOptions, name: str, component: str, argv: list[str]) -> dict[str, Any]:
    overrides = train_overrides(o) if component == "train" else sweep_overrides(o)
    entrypoint = shlex.join([*argv, *[arg for item in overrides for arg in ("--set", item)]])
    # The image's copy of jobs/ is the job's working dir (uploaded by the submitter).
    runtime_env = {"working_dir": WORKDIR, "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "60"}}
    spec = {
        "entrypoint": entrypoint,
        "runtimeEnvYAML": yaml.safe_dump(runtime_env, sort_keys=False),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 600,
        "rayClusterSpec": _spec(o, _groups(o, gpus=component == "train"), serving=False),
    }
    return _object("RayJob", name, component, spec)


def _service(o: ManifestOptions, config: Mapping[str, Any]) -> dict[str, Any]:
    gpus = any(
        (d.get("ray_actor_options") or {}).get("num_gpus", 0) > 0
        for app in config.get("applications") or []
        for d in app.get("deployments") or []
    )
    spec = {
        "serveConfigV2": yaml.safe_dump(dict(config), sort_keys=False),
        "rayClusterConfig": _spec(o, _groups(o, gpus=gpus), serving=True, keys=True),
    }
    return _object("RayService", f"{o.name}-serve", "serve", spec)


def _monitoring(o: ManifestOptions) -> list[dict[str, Any]]:
    labels = dict(o.monitor_labels)
    relabel = [
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
            "targetLabel": "ray_io_cluster",
        }
    ]
    docs = []
    for role, ports in (
        ("head", ["metrics", "dash-metrics", "as-metrics"]),
        ("worker", ["metrics"]),
    ):
        spec = {
            "jobLabel": "ray.io/node-type",
            "selector": {"matchLabels": {**PART_OF, "ray.io/node-type": role}},
            "podMetricsEndpoints": [{"port": port, "relabelings": relabel} for port in ports],
        }
        docs.append(_object("PodMonitor", f"{o.name}-ray-{role}", "monitoring", spec, labels))
    if o.alert_groups:
        spec = {"groups": [dict(group) for group in o.alert_groups]}
        docs.append(_object("PrometheusRule", f"{o.name}-alerts", "monitoring", spec, labels))
    return docs


def _service_account(o: ManifestOptions) -> dict[str, Any]:
    found = _object("ServiceAccount", o.name, "cluster", None)
    if o.service_account_annotations:
        found["metadata"]["annotations"] = dict(o.service_account_annotations)
    return found


def _claim(o: ManifestOptions) -> dict[str, Any]:
    spec = {
        # One node (kind, minikube): ReadWriteOnce is enough; several nodes need a
        # ReadWriteMany class (EFS, Filestore, NFS) or S3/GCS instead.
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "20Gi"}},
    }
    return _object("PersistentVolumeClaim", str(o.storage_claim), "storage", spec)


API_VERSIONS = {
    "ServiceAccount": "v1",
    "PersistentVolumeClaim": "v1",
    "RayCluster": "ray.io/v1",
    "RayJob": "ray.io/v1",
    "RayService": "ray.io/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}


def _object(
    kind: str,
    name: str,
    component: str,
    spec: Any,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "raylift", "app.kubernetes.io/component": component}
    labels.update(PART_OF)
    labels.update(extra_labels or {})
    found: dict[str, Any] = {
        "apiVersion": API_VERSIONS[kind],
        "kind": kind,
        "metadata": {"name": name, "labels": labels},
    }
    if spec is not None:
        found["spec"] = spec
    return found
