"""ray_compat.check(): every private Ray name raylift declares is in the installed Ray."""

from __future__ import annotations

import subprocess
import sys

from raylift import ray_compat
from raylift.ray_compat import Requirement, check


def test_the_installed_ray_has_every_declared_private_name() -> None:
    assert check() == []


def test_every_module_declares_what_it_needs() -> None:
    import importlib

    for name in ray_compat.MODULES:
        module = importlib.import_module(f"raylift.ray_compat.{name}")
        assert module.REQUIRES, name
        assert all(isinstance(r, Requirement) for r in module.REQUIRES), name
    assert len(ray_compat.requirements()) > len(ray_compat.MODULES)


def test_check_names_what_is_missing() -> None:
    assert check([Requirement("ray.train", "NoSuchTrainer")]) == ["ray.train:NoSuchTrainer"]
    assert check([Requirement("ray.train", "ScalingConfig.no_such_attribute")]) == [
        "ray.train:ScalingConfig.no_such_attribute"
    ]
    [gap] = check([Requirement("ray._no_such_module")])
    assert gap.startswith("ray._no_such_module (import failed: ModuleNotFoundError")
    assert check([Requirement("ray.train", "ScalingConfig")]) == []


def test_check_names_a_name_the_source_no_longer_mentions() -> None:
    kv = Requirement("ray.experimental.internal_kv", "_internal_kv_put", uses=("namespace", "nope"))
    assert check([kv]) == ["ray.experimental.internal_kv:_internal_kv_put uses nope"]
    message = "ray.core.generated.gcs_pb2:PlacementGroupTableData"
    fields = Requirement(
        message.split(":")[0], "PlacementGroupTableData", uses=("is_detached", "x")
    )
    assert check([fields]) == [f"{message} uses x"]  # a protobuf message: its fields


def test_importing_ray_compat_imports_no_ray() -> None:
    modules = ", ".join(f"raylift.ray_compat.{name}" for name in ray_compat.MODULES)
    code = (
        f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
