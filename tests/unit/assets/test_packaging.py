"""The src layout must not shadow the standard library's ``platform`` module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_no_platform_package_init() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert (ROOT / "platform" / "raylift" / "__init__.py").exists()


def test_stdlib_platform_ray_and_torch_import_from_repo_root() -> None:
    code = (
        "import platform; v = platform.python_version(); assert v.startswith('3.');"
        "import ray, torch, raylift;"
        "print(v, ray.__version__, torch.__version__.split('+')[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1] == "2.60.0" and out[2] == "2.13.0"


def test_constraints_pin_torch_and_ray() -> None:
    text = (ROOT / "constraints.txt").read_text()
    assert "torch==2.13.0" in text and "ray==2.60.0" in text


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "raylift"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for noun in ("train", "validate", "runs"):
        assert noun in out
