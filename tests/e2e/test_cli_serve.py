"""`raylift serve` as a user runs it: the shipped specs, a shared cluster, Ctrl-C, status, down.

The exports sit where `raylift train jobs/digits-mlp.yaml` and `jobs/tinygpt-pretrain.yaml`
put them in the default storage (trained here in-process to keep the test short), so the
shipped serve specs are used unedited apart from the port.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from raylift.ports import free_port
from raylift.testing.exports import digits_spec, gpt_spec, make_export

ROOT = Path(__file__).resolve().parents[2]
RAYLIFT = str(Path(sys.executable).parent / "raylift")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def wait_for_line(log: Path, text: str, process: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text()
        if text in content:
            return content
        if process.poll() is not None:
            break
        time.sleep(0.3)
    pytest.fail(f"no {text!r} in the output of {process.args}: {log.read_text()[-3000:]}")


def test_serve_two_apps_on_one_cluster_ctrl_c_removes_only_its_own(
    tmp_path: Path, _isolated_storage: Path
) -> None:
    import ray
    from ray import serve

    make_export(_isolated_storage / "digits-mlp" / "model", digits_spec("digits-mlp"))
    make_export(_isolated_storage / "tinygpt-pretrain" / "model", gpt_spec("tinygpt-pretrain"), 50)
    port = free_port()
    ray.init(num_cpus=3, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "RAYLIFT_STORAGE_PATH": str(_isolated_storage)}
    on_port = ["--set", f"port={port}", "--address", address]
    log = tmp_path / "digits.log"
    foreground = subprocess.Popen(
        [RAYLIFT, "serve", "serve/digits.yaml", *on_port],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_line(log, "digits: running after", foreground, timeout=180)
        base = f"http://127.0.0.1:{port}"
        sample = [[float(v) for v in row] for row in _digits_rows()]
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 64], "data": sample}]}
        if shutil.which("curl"):  # what the README shows
            curl = subprocess.run(
                ["curl", "-s", "-X", "POST", f"{base}/v2/models/digits/infer",
                 "-H", "Content-Type: application/json", "-d", json.dumps(body)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert json.loads(curl.stdout)["outputs"][1]["name"] == "label"
        answer = httpx.post(f"{base}/v2/models/digits/infer", json=body, timeout=30).json()
        assert len(answer["outputs"][1]["data"]) == 2

        detached = subprocess.run(
            [RAYLIFT, "serve", "serve/tinygpt.yaml", *on_port, "--detach",
             "--set", "route_prefix=/gpt"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert detached.returncode == 0, detached.stdout + detached.stderr
        assert "left running" in detached.stdout
        completion = httpx.post(
            f"{base}/gpt/v1/completions",
            json={"model": "tinygpt", "prompt": "The ", "max_tokens": 5},
            timeout=30,
        ).json()
        assert completion["usage"]["completion_tokens"] == 5

        status = subprocess.run(
            [RAYLIFT, "serve", "status", "--address", address],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "digits: RUNNING" in status.stdout and "tinygpt: RUNNING" in status.stdout
        assert "digits-v1 1/1 running" in status.stdout

        foreground.send_signal(signal.SIGINT)  # Ctrl-C
        assert foreground.wait(timeout=60) == 0, log.read_text()[-2000:]
        assert "digits: removed" in log.read_text()
        assert set(serve.status().applications) == {"tinygpt"}  # the other app is untouched

        down = subprocess.run(
            [RAYLIFT, "serve", "down", "tinygpt", "--address", address],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert down.returncode == 0 and "tinygpt: removed" in down.stdout
        again = subprocess.run(
            [RAYLIFT, "serve", "down", "tinygpt", "--address", address],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert again.returncode == 2 and "no Serve application 'tinygpt'" in again.stderr
    finally:
        if foreground.poll() is None:
            foreground.kill()
        serve.shutdown()
        ray.shutdown()


def _digits_rows() -> list[list[int]]:
    from sklearn.datasets import load_digits

    return load_digits().data[:2].astype(int).tolist()
