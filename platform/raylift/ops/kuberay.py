"""KubeRay ``RayClusterSpec`` for raylift: a CPU head, CPU workers, on-demand and spot GPU workers.

Pure data (no Ray, no I/O): :mod:`raylift.ops.manifests` checks the options and puts the
spec under a RayCluster, a RayJob's ``rayClusterSpec`` or a RayService's
``rayClusterConfig``. Every pod runs the raylift image (cluster/docker/Dockerfile)
as the image's non-root user, with the cluster's storage root in
``$RAYLIFT_STORAGE_PATH``; the Ray token comes from a Secret through KubeRay's
``authOptions`` (never from the manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RAY_VERSION = "2.60.0"
RAY_UID, RAY_GID = 1000, 100  # the `ray` user of the rayproject/ray images
METRICS_PORT = 8080  # Ray's metrics export port; the one cluster/prometheus scrapes
DASHBOARD_METRICS_PORT = 44227
AUTOSCALER_METRICS_PORT = 44217
SERVE_PORT = 8000
HEAD_PORTS = {
    "gcs-server": 6379,
    "dashboard": 8265,
    "client": 10001,
    "serve": SERVE_PORT,
    "metrics": METRICS_PORT,
    "dash-metrics": DASHBOARD_METRICS_PORT,
    "as-metrics": AUTOSCALER_METRICS_PORT,
}
WORKER_PORTS = {"serve": SERVE_PORT, "metrics": METRICS_PORT}
GPU_RESOURCE = "nvidia.com/gpu"
PART_OF = {"app.kubernetes.io/part-of": "raylift"}


@dataclass(frozen=True)
class Group:
    """One worker group: its pods' size and placement."""

    name: str
    bounds: tuple[int, int]
    cpus: int
    memory: str
    gpus: int = 0
    spot: bool | None = None  # True: spot nodes only; False: never spot; None: anywhere


@dataclass(frozen=True)
class Placement:
    """How spot nodes are told apart: a node label and, where the cloud taints them, a taint."""

    spot_label: tuple[str, str] | None = None
    spot_toleration: dict[str, str] | None = None


@dataclass(frozen=True)
class Pods:
    """What every pod of one Ray cluster shares."""

    image: str
    service_account: str
    env: tuple[dict[str, Any], ...]
    head_cpus: int
    head_memory: str
    placement: Placement
    storage_claim: tuple[str, str] | None = None  # (PVC name, mount path)


def cluster_spec(pods: Pods, groups: list[Group], token_secret: str) -> dict[str, Any]:
    """A RayClusterSpec: token auth, in-tree autoscaling, the head and the worker groups."""
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "upscalingMode": "Default",
            "idleTimeoutSeconds": 60,
            "resources": _size("500m", "512Mi"),
        },
        "authOptions": {"mode": "token", "secretName": token_secret},
        "headGroupSpec": {
            # No tasks or actors on the head: drivers and Ray's control plane only.
            "rayStartParams": {
                "num-cpus": "0",
                "dashboard-host": "0.0.0.0",
                "metrics-export-port": str(METRICS_PORT),
            },
            "template": _template(pods, "ray-head", HEAD_PORTS, pods.head_cpus, pods.head_memory),
        },
        "workerGroupSpecs": [_worker_group(pods, group) for group in groups],
    }


def _worker_group(pods: Pods, group: Group) -> dict[str, Any]:
    low, high = group.bounds
    template = _template(pods, "ray-worker", WORKER_PORTS, group.cpus, group.memory, group.gpus)
    spec = template["spec"]
    if group.gpus:
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    label = pods.placement.spot_label
    if group.spot and label:
        spec["nodeSelector"] = {label[0]: label[1]}
        if pods.placement.spot_toleration:
            spec.setdefault("tolerations", []).append(dict(pods.placement.spot_toleration))
    elif group.spot is False and label:
        # On-demand: any node that is not a spot node (NotIn also matches unlabelled nodes).
        term = {"matchExpressions": [{"key": label[0], "operator": "NotIn", "values": [label[1]]}]}
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
            }
        }
    return {
        "groupName": group.name,
        "replicas": low,
        "minReplicas": low,
        "maxReplicas": high,
        "rayStartParams": {"metrics-export-port": str(METRICS_PORT)},
        "template": template,
    }


def _template(
    pods: Pods, name: str, ports: dict[str, int], cpus: int, memory: str, gpus: int = 0
) -> dict[str, Any]:
    resources = _size(str(cpus), memory)
    if gpus:
        for part in resources.values():
            part[GPU_RESOURCE] = gpus
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    if pods.storage_claim:
        claim, path = pods.storage_claim
        mounts.append({"name": "storage", "mountPath": path})
        volumes.append({"name": "storage", "persistentVolumeClaim": {"claimName": claim}})
    container = {
        "name": name,
        "image": pods.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [dict(item) for item in pods.env],
        "ports": [{"name": key, "containerPort": port} for key, port in ports.items()],
        "resources": resources,
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "metadata": {"labels": dict(PART_OF)},
        "spec": {
            "serviceAccountName": pods.service_account,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RAY_UID,
                "runAsGroup": RAY_GID,
                "fsGroup": RAY_GID,
            },
            "containers": [container],
            "volumes": volumes,
        },
    }


def _size(cpu: str, memory: str) -> dict[str, dict[str, Any]]:
    """Requests equal to limits: what Ray advertises is what the pod is guaranteed."""
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu, "memory": memory},
    }
