"""Offline validation of Kubernetes objects, as close to the API server as a schema gets.

- Custom resources (KubeRay's RayCluster, RayJob, RayService; the Prometheus operator's
  PodMonitor and PrometheusRule when their CRDs are at hand) against their CRD's
  ``openAPIV3Schema`` with jsonschema, made structural the way the API server applies it:
  a field the schema does not list is an error (``kubectl apply``'s strict field
  validation), ``x-kubernetes-list-type`` set/map entries must be unique.
- Core objects (ServiceAccount, PersistentVolumeClaim, and every pod template, wrapped in
  a PodTemplate) against Kubernetes' own schemas with ``kubernetes-validate --strict``.
- The KubeRay operator's own spec checks that a schema cannot express (names, replicas,
  token auth needs rayVersion >= 2.52), after ray-operator/controllers/ray/utils/validation.go.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from raylift.testing import REPO_ROOT as ROOT

KUBERAY_CRDS = Path(os.environ.get("RAYLIFT_KUBERAY_CRDS", ROOT.parent / "shared" / "kuberay-crds"))
PROMETHEUS_CRDS = Path(
    os.environ.get("RAYLIFT_PROMETHEUS_CRDS", ROOT.parent / "shared" / "prometheus-operator-crds")
)
CRD_FILES = {
    "RayCluster": KUBERAY_CRDS / "ray.io_rayclusters.yaml",
    "RayJob": KUBERAY_CRDS / "ray.io_rayjobs.yaml",
    "RayService": KUBERAY_CRDS / "ray.io_rayservices.yaml",
    "PodMonitor": PROMETHEUS_CRDS / "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": PROMETHEUS_CRDS / "monitoring.coreos.com_prometheusrules.yaml",
}
K8S_VERSIONS = ("1.30", "1.37")  # the oldest Kubernetes KubeRay 1.7 supports, and the newest
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}  # KubeRay's name limits
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_docs(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``."""
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc]


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected wherever it lists the fields."""
    node = dict(schema)
    if "properties" in node:
        node["properties"] = {k: structural(v) for k, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            node["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = structural(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        node["items"] = structural(node["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            node[key] = [structural(item) for item in node[key]]
    return node


def _list_type(validator: Any, kind: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """``x-kubernetes-list-type``: a set has unique items, a map unique list-map-keys."""
    if not validator.is_type(instance, "array"):
        return
    if kind == "set":
        seen = [json.dumps(item, sort_keys=True) for item in instance]
        if len(set(seen)) != len(seen):
            yield jsonschema.ValidationError(f"duplicate items in a set: {instance}")
    elif kind == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        found = [tuple(item.get(key) for key in keys) for item in instance]
        for dup in sorted({k for k in found if found.count(k) > 1}, key=str):
            yield jsonschema.ValidationError(f"duplicate entries with {keys} = {list(dup)}")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"x-kubernetes-list-type": _list_type}
)


@functools.cache
def crd_validator(kind: str) -> Any:
    """A validator for ``kind`` (ray.io/v1 or monitoring.coreos.com/v1) from its CRD."""
    crd = load_docs(CRD_FILES[kind])[0]
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return _Validator(structural(version["schema"]["openAPIV3Schema"]))


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """``doc``'s errors against its kind's structural CRD schema, one line each."""
    return [
        f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, e.absolute_path))}: "
        f"{e.message}"
        for e in crd_validator(doc["kind"]).iter_errors(doc)
    ]


def core_errors(obj: dict[str, Any]) -> list[str]:
    """Kubernetes' schemas (strict: unknown fields are errors) for every version checked."""
    import kubernetes_validate

    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.path))
            errors.append(f"{obj['kind']} (Kubernetes {version}): {where}: {exc.message}")
    return errors


def cluster_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, RayClusterSpec) of a RayCluster, RayJob or RayService."""
    spec = doc["spec"]
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    for key in ("rayClusterSpec", "rayClusterConfig"):
        if key in spec:
            return [(f"{name}.spec.{key}", spec[key])]
    return [(f"{name}.spec", spec)] if doc["kind"] == "RayCluster" else []


def pod_templates(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group name, pod template) of the head and every worker group."""
    found = [("head", spec["headGroupSpec"]["template"])]
    found += [(g["groupName"], g["template"]) for g in spec.get("workerGroupSpecs", [])]
    return found


def as_pod_template(template: dict[str, Any]) -> dict[str, Any]:
    """A core PodTemplate object around ``template`` (for kubernetes-validate)."""
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "check"},
        "template": template,
    }


def kuberay_errors(doc: dict[str, Any]) -> list[str]:
    """The KubeRay operator's checks of a custom resource that its CRD schema leaves out."""
    errors = []
    name = doc["metadata"]["name"]
    if not DNS1035.match(name) or len(name) > MAX_NAME[doc["kind"]]:
        errors.append(
            f"{doc['kind']} name {name!r}: a DNS-1035 label of <= {MAX_NAME[doc['kind']]}"
        )
    if doc["kind"] == "RayJob" and not doc["spec"].get("entrypoint"):
        errors.append(f"RayJob/{name}: no entrypoint")
    for where, spec in cluster_specs(doc):
        errors += [f"{where}: {e}" for e in _cluster_spec_errors(spec)]
    return errors


def _cluster_spec_errors(spec: dict[str, Any]) -> list[str]:
    errors = []
    autoscaling = spec.get("enableInTreeAutoscaling", False)
    groups = [
        ("head", spec["headGroupSpec"]),
        *[(g["groupName"], g) for g in spec.get("workerGroupSpecs", [])],
    ]
    for name, group in groups:
        if not group["template"]["spec"].get("containers"):
            errors.append(f"{name}: no container")
        params = group.get("rayStartParams", {})
        if group.get("resources") and any(
            params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")
        ):
            errors.append(f"{name}: resources in both rayStartParams and resources")
        if "labels" in params:
            errors.append(f"{name}: rayStartParams['labels'] is not supported")
        if name == "head":
            continue
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (low is None or high is None):
            errors.append(f"{name}: minReplicas and maxReplicas are needed without autoscaling")
        if low is not None and high is not None and not 0 <= low <= high:
            errors.append(f"{name}: minReplicas {low} > maxReplicas {high}")
        replicas = group.get("replicas")
        bounded = replicas is not None and low is not None and high is not None
        if bounded and not low <= replicas <= high:
            errors.append(f"{name}: replicas {replicas} outside [{low}, {high}]")
    auth = spec.get("authOptions") or {}
    if auth.get("mode") == "token":
        version = tuple(int(p) for p in str(spec.get("rayVersion", "0")).split(".")[:3])
        if version < (2, 52, 0):
            errors.append("authOptions.mode token needs rayVersion >= 2.52.0")
    return errors
