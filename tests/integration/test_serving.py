"""raylift's Serve application on a real local Ray, queried over real HTTP on 127.0.0.1.

One application for the module (built from real exports trained in-process):
``digits`` v1 (fp32, batching, autoscaling 1-2 with short delays), ``digits``
v2 (the same export in int8) and ``gpt`` (completions). API keys are on, read
by the ingress from an environment variable set before Ray starts.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from raylift.models.exported import load_export
from raylift.ports import free_port
from raylift.serving.generate import complete, sampling_from
from raylift.serving.haproxy import private_folder, use_for_embedded_ray
from raylift.specs.serve import ServeSpec
from raylift.testing.exports import digits_spec, gpt_spec, make_export
from raylift.testing.metrics_scrape import scrape_metric

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KEY = "test-key-7f3a"
KEYS_ENV = "RAYLIFT_TEST_SERVE_KEYS"
APP = "servetest"


class Served:
    def __init__(
        self, spec: ServeSpec, digits: Path, gpt: Path, dashboard: str, ingress: dict[str, str]
    ) -> None:
        self.spec = spec
        self.ingress_env = ingress  # HAProxy's settings
        self.base = f"http://127.0.0.1:{spec.port}"
        self.digits = load_export(str(digits))
        self.gpt = load_export(str(gpt))
        self.digits_path, self.gpt_path = digits, gpt
        self.dashboard = dashboard
        self.http = httpx.Client(
            base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import ray
    from ray import serve

    from raylift.serving.deploy import deploy, start_serve

    root = tmp_path_factory.mktemp("serving")
    digits = make_export(root / "digits", digits_spec(hidden_sizes=[64]))
    gpt = make_export(root / "gpt", gpt_spec(), steps=150, lr=0.003)
    spec = ServeSpec.model_validate(
        {
            "name": APP,
            "port": free_port(),
            "auth": {"api_keys_env": KEYS_ENV},
            "models": [
                {
                    "name": "digits",
                    "version": "1",
                    "model": {"path": str(digits)},
                    "replicas": {
                        "min": 1,
                        "max": 2,
                        "target_ongoing_requests": 1,
                        "upscale_delay_s": 1,
                        "downscale_delay_s": 2,
                    },
                    "resources": {"cpus": 0.5},
                    "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
                    "limits": {"max_body_bytes": 65536, "max_rows": 100},
                },
                {
                    "name": "digits",
                    "version": "2",
                    "model": {"path": str(digits)},
                    "quantize": "int8",
                    "max_accuracy_drop_pts": 5,
                    "resources": {"cpus": 0.25},
                },
                {
                    "name": "gpt",
                    "model": {"path": str(gpt)},
                    "resources": {"cpus": 0.25},
                    "batching": {"enabled": False},
                    "limits": {"max_tokens": 32},
                },
            ],
        }
    )
    os.environ[KEYS_ENV] = f"other-key, {KEY}"  # inherited by Ray's processes
    ingress_env = use_for_embedded_ray()  # as `raylift serve` does for its own Ray
    dashboard_port = free_port()
    ray.init(
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    try:
        start_serve(spec)
        deploy(spec)
        yield Served(spec, digits, gpt, f"http://127.0.0.1:{dashboard_port}", ingress_env)
    finally:
        serve.shutdown()
        ray.shutdown()
        for key in [KEYS_ENV, *ingress_env]:
            os.environ.pop(key, None)


def test_haproxy_carries_the_traffic_and_listens_only_on_loopback(served: Served) -> None:
    """The default ingress of an embedded Ray: HAProxy with private files, every
    listener (frontend, stats, Prometheus exporter) on 127.0.0.1, as are the replicas'."""
    import psutil

    assert served.ingress_env, "RAY_SERVE_ENABLE_HA_PROXY was set outside the test"
    folder = private_folder(served.ingress_env)
    assert served.http.get("/v2/health/ready").status_code == 200
    listening = _haproxy_listeners(folder)
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, sorted(listening)
    ports = {port for _, port in listening}
    assert served.spec.port in ports
    assert int(served.ingress_env["RAY_SERVE_HAPROXY_STATS_PORT"]) in ports
    assert int(served.ingress_env["RAY_SERVE_HAPROXY_METRICS_PORT"]) in ports
    # HAProxy sends requests straight to the ingress replicas' HTTP ports (and to
    # Serve's fallback proxy): those listen on loopback too.
    configs = list(Path(folder).glob("**/haproxy.cfg.local"))
    assert configs, f"no rewritten HAProxy config in {folder}"
    targets = {
        int(line.split()[2].rsplit(":", 1)[1])
        for line in configs[0].read_text().splitlines()
        if line.strip().startswith("server ")
    }
    fallback = int(served.ingress_env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"])
    assert targets - {fallback}, "HAProxy routes to no replica"
    rays = [
        p
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [""])[0].startswith("ray::")
    ]
    bound = {port: ip for ip, port in _listening(rays) if port in targets}
    assert bound == dict.fromkeys(targets, "127.0.0.1"), (targets, bound)


def _haproxy_listeners(folder: str, timeout_s: float = 30.0) -> set[tuple[str, int]]:
    """What the HAProxy running on a config in `folder` listens on. Serve reloads
    HAProxy (a new process takes over and the old one exits) whenever its routes
    change, so a process seen a moment ago may be gone: look again until one answers."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while True:
        haproxies = [
            p
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "haproxy" and folder in " ".join(p.info["cmdline"] or [])
        ]
        listening = _listening(haproxies)
        if listening or time.monotonic() > deadline:
            assert listening, f"no HAProxy listening on a config in {folder}"
            return listening
        time.sleep(0.5)


def _listening(processes: list[Any]) -> set[tuple[str, int]]:
    """The listening sockets of `processes`; a process that exited meanwhile has none."""
    import psutil

    found: set[tuple[str, int]] = set()
    for proc in processes:
        try:
            connections = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def _replica_processes(deployment: str = "") -> list[Any]:
    """This module's Serve replica processes (of one deployment, when given)."""
    import psutil

    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if (p.info["cmdline"] or [""])[0].startswith(f"ray::ServeReplica:{APP}:{deployment}")
    ]


def infer_body(rows: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.tolist()}
        ]
    }


def test_predictions_over_http_equal_the_models_own(served: Served) -> None:
    sample = served.digits.sample()
    raw = sample["inputs"][:20].numpy().astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(served.digits.logits(raw), dim=-1).numpy()

    response = served.http.post("/v2/models/digits/infer", json={**infer_body(raw), "id": "r1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "digits" and body["model_version"] == "1" and body["id"] == "r1"
    outputs = {o["name"]: o for o in body["outputs"]}
    probs = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
    assert outputs["label"]["data"] == expected.argmax(1).tolist()
    assert np.mean(np.array(outputs["label"]["data"]) == sample["targets"][:20].numpy()) >= 0.9

    one = served.http.post("/v2/models/digits/versions/1/infer", json=infer_body(raw[:1]))
    assert one.json()["outputs"][1]["data"] == [int(expected[0].argmax())]

    meta = served.http.get("/v2/models/digits").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["parameters"]["quantized"] is False
    v2 = served.http.get("/v2/models/digits/versions/2").json()
    assert v2["parameters"]["quantized"] is True
    assert v2["parameters"]["int8_gate"]["drop_pts"] <= 5
    assert served.http.get("/v2/health/ready").json() == {"ready": True}


def test_tritonclient_reads_metadata_and_infers_with_binary_tensors(served: Served) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=served.base.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {KEY}"}
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits", "2", headers=headers)
    meta = client.get_model_metadata("digits", "2", headers=headers)
    assert meta["outputs"][0]["name"] == "probabilities"

    raw = served.digits.sample()["inputs"][:8].numpy().astype(np.float32)
    tensor = triton.InferInput("input", list(raw.shape), "FP32")
    tensor.set_data_from_numpy(raw, binary_data=True)
    wanted = [triton.InferRequestedOutput("label", binary_data=True)]
    for version in ("1", "2"):
        result = client.infer(
            "digits", [tensor], model_version=version, outputs=wanted, headers=headers
        )
        labels = result.as_numpy("label")
        assert labels.dtype == np.int64 and labels.shape == (8,)
        expected = served.digits.predict(raw).numpy()
        assert np.mean(labels == expected) >= (1.0 if version == "1" else 0.75)

    prompt = triton.InferInput("text_input", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([b"The class"], dtype=object), binary_data=True)
    result = client.infer(
        "gpt", [prompt], parameters={"max_tokens": 6, "temperature": 0}, headers=headers
    )
    text = result.as_numpy("text_output")[0].decode()
    assert text == _local_completion(served, "The class", max_tokens=6, temperature=0).text
    client.close()


def _local_completion(served: Served, prompt: str, **options: Any) -> Any:
    sampling = sampling_from(options, max_tokens_limit=1000)
    return complete(served.gpt.model, served.gpt.preprocessing, prompt, sampling)


def test_the_openai_client_completes_and_streams(served: Served) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{served.base}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt", "gpt:1"]

    options = {"max_tokens": 12, "temperature": 0.8, "top_p": 0.9, "seed": 7}
    expected = _local_completion(served, "def ", **options)
    done = client.completions.create(model="gpt", prompt="def ", **options)
    assert done.choices[0].text == expected.text
    assert done.choices[0].finish_reason == expected.finish_reason
    assert done.usage.prompt_tokens == 4 and done.usage.completion_tokens == 12

    pieces, finish = [], None
    for chunk in client.completions.create(model="gpt", prompt="def ", stream=True, **options):
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
            finish = chunk.choices[0].finish_reason or finish
    assert len(pieces) > 2 and "".join(pieces) == expected.text and finish == "length"

    stop = expected.text[3:5]
    stopped = client.completions.create(model="gpt:1", prompt="def ", stop=stop, **options)
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == expected.text[: expected.text.index(stop)]

    with pytest.raises(openai.BadRequestError, match="max_tokens 33"):
        client.completions.create(model="gpt", prompt="x", max_tokens=33)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    denied = openai.OpenAI(base_url=f"{served.base}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        denied.completions.create(model="gpt", prompt="x")


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (name, path, request kwargs, status, text the error must contain)
    ("malformed JSON", "/v2/models/digits/infer", {"content": b'{"inputs": ['}, 400, "malformed"),
    ("not an object", "/v2/models/digits/infer", {"json": [1, 2]}, 400, "JSON object"),
    ("no inputs", "/v2/models/digits/infer", {"json": {"inputs": []}}, 400, "non-empty"),
    (
        "wrong shape",
        "/v2/models/digits/infer",
        {
            "json": {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 63], "data": [1] * 63}
                ]
            }
        },
        400,
        "[N, 64] expected",
    ),
    (
        "wrong datatype",
        "/v2/models/digits/infer",
        {"json": {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}},
        400,
        "FP32 expected",
    ),
    (
        "wrong length",
        "/v2/models/digits/infer",
        {
            "json": {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [1] * 60}
                ]
            }
        },
        400,
        "60 values",
    ),
    (
        "NaN",
        "/v2/models/digits/infer",
        {
            "content": b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], '
            b'"data": [NaN' + b", 1" * 63 + b"]}]}"
        },
        400,
        "NaN",
    ),
    (
        "infinity",
        "/v2/models/digits/infer",
        {
            "json": {
                "inputs": [
                    {"name": "input", "datatype": "FP64", "shape": [1, 64], "data": [1e300] * 64}
                ]
            }
        },
        400,
        "infinity",
    ),
    (
        "out of the data's range",
        "/v2/models/digits/infer",
        {
            "json": {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [99] * 64}
                ]
            }
        },
        400,
        "[0, 16]",
    ),
    (
        "too many rows",
        "/v2/models/digits/infer",
        {
            "json": {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [101, 64], "data": [1] * 6464}
                ]
            }
        },
        413,
        "at most 100",
    ),
    ("body too big", "/v2/models/digits/infer", {"content": b" " * 70000}, 413, "at most 65536"),
    ("unknown model", "/v2/models/cats/infer", {"json": {}}, 404, "unknown model 'cats'"),
    ("unknown version", "/v2/models/digits/versions/9/infer", {"json": {}}, 404, "no version '9'"),
    (
        "unknown output",
        "/v2/models/digits/infer",
        {
            "json": {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [1] * 64}
                ],
                "outputs": [{"name": "logits"}],
            }
        },
        400,
        "unknown output",
    ),
    (
        "too many tokens",
        "/v2/models/gpt/infer",
        {
            "json": {
                "inputs": [
                    {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["a"]}
                ],
                "parameters": {"max_tokens": 1000},
            }
        },
        400,
        "max_tokens 1000",
    ),
    ("openai: no model", "/v1/completions", {"json": {"prompt": "x"}}, 400, "'model' is required"),
    (
        "openai: bad temperature",
        "/v1/completions",
        {"json": {"model": "gpt", "prompt": "x", "temperature": "hot"}},
        400,
        "temperature",
    ),
    (
        "openai: classifier",
        "/v1/completions",
        {"json": {"model": "digits", "prompt": "x"}},
        400,
        "classifier",
    ),
]


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "text"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_a_4xx_that_names_the_problem(
    served: Served, path: str, kwargs: dict[str, Any], status: int, text: str
) -> None:
    response = served.http.post(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    message = body["error"] if isinstance(body["error"], str) else body["error"]["message"]
    assert text in message


def test_api_keys_guard_everything_but_health(served: Served) -> None:
    anonymous = httpx.Client(base_url=served.base, timeout=30)
    assert anonymous.get("/v2/health/live").status_code == 200
    assert anonymous.get("/v2/health/ready").status_code == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}):
        denied = anonymous.get("/v2/models/digits", headers=headers)
        assert denied.status_code == 401 and denied.json() == {"error": "missing or wrong API key"}
        assert denied.headers["www-authenticate"] == "Bearer"
    assert anonymous.get("/v2/models/digits", headers={"X-API-Key": "other-key"}).status_code == 200
    # The replica kept serving through every refusal above.
    raw = served.digits.sample()["inputs"][:2].numpy().astype(np.float32)
    assert served.http.post("/v2/models/digits/infer", json=infer_body(raw)).status_code == 200


def test_metrics_reach_rays_metrics_endpoint(served: Served) -> None:
    raw = served.digits.sample()["inputs"][:4].numpy().astype(np.float32)
    for _ in range(3):
        assert served.http.post("/v2/models/digits/infer", json=infer_body(raw)).status_code == 200
    served.http.post("/v1/completions", json={"model": "gpt", "prompt": "a", "max_tokens": 3})
    ok = scrape_metric(
        "ray_raylift_serve_requests_total",
        until=lambda v: v >= 3,
        model="digits",
        version="1",
        code="200",
        application=APP,
    )
    assert ok is not None and ok >= 3
    assert scrape_metric("ray_raylift_serve_requests_total", model="cats", code="404") is not None
    assert scrape_metric("ray_raylift_serve_quantized", model="digits", version="2") == 1.0
    assert scrape_metric("ray_raylift_serve_quantized", model="digits", version="1") == 0.0
    assert (scrape_metric("ray_raylift_serve_tokens_generated_total", model="gpt") or 0) >= 3
    for histogram in ("request_latency_ms", "queue_latency_ms", "model_latency_ms", "batch_size"):
        count = scrape_metric(f"ray_raylift_serve_{histogram}_count", model="digits", version="1")
        assert count is not None and count >= 3, histogram
    load = scrape_metric("ray_raylift_serve_model_load_seconds", model="gpt")
    assert load is not None and 0 < load < 60


def test_emitted_config_deploys_with_serve_deploy(served: Served, tmp_path: Path) -> None:
    from raylift.serving.app import serve_config

    spec = served.spec.model_copy(
        update={
            "name": "emitted",
            "route_prefix": "/emitted",
            "models": [served.spec.models[2].model_copy(update={"name": "gpt2"})],
        }
    )
    config = tmp_path / "serve-config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(serve_config(spec)))
    serve_cli = Path(sys.executable).parent / "serve"  # Ray's own CLI, next to python
    deployed = subprocess.run(
        [str(serve_cli), "deploy", str(config), "-a", served.dashboard],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    deadline = time.monotonic() + 90
    answer = None
    while time.monotonic() < deadline:
        answer = served.http.post(
            "/emitted/v1/completions", json={"model": "gpt2", "prompt": "a", "max_tokens": 2}
        )
        if answer.status_code == 200:
            break
        time.sleep(1)
    assert answer is not None and answer.status_code == 200, answer.text if answer else None
    assert answer.json()["usage"]["completion_tokens"] == 2
    from ray import serve

    serve.delete("emitted")
    assert APP in serve.status().applications


def _replicas(deployment: str) -> int:
    from ray import serve

    states = serve.status().applications[APP].deployments[deployment].replica_states
    return int(states.get("RUNNING", 0))


class Load:
    """``threads`` clients posting one digits request after another; bounded in time."""

    def __init__(self, served: Served, threads: int, seconds: float) -> None:
        self.served, self.threads, self.seconds = served, threads, seconds
        self.codes: list[int] = []
        self.stop = threading.Event()
        self.raw = served.digits.sample()["inputs"][:8].numpy().astype(np.float32)
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with httpx.Client(
            base_url=self.served.base, timeout=30, headers=self.served.http.headers
        ) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    code = http.post(
                        "/v2/models/digits/infer", json=infer_body(self.raw)
                    ).status_code
                except httpx.HTTPError:
                    code = 599
                self.codes.append(code)


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(served: Served) -> None:
    assert _replicas("digits-v1") == 1
    with Load(served, threads=6, seconds=90) as load:
        grew = _wait(lambda: _replicas("digits-v1") == 2, timeout=80)
    assert grew, f"no second replica under load ({len(load.codes)} requests)"
    assert set(load.codes) == {200}
    assert _wait(lambda: _replicas("digits-v1") == 1, timeout=90), "did not scale back down"


def test_a_killed_replica_fails_only_its_in_flight_requests_and_is_replaced(
    served: Served,
) -> None:
    threads = 4
    with Load(served, threads=threads, seconds=60) as load:
        assert _wait(lambda: len(load.codes) > 20, timeout=30)
        victims = _replica_processes("digits-v1")
        assert victims, "no digits-v1 replica process"
        before = len(load.codes)
        victims[0].kill()
        replaced = _wait(lambda: _replicas("digits-v1") >= 1 and len(load.codes) > before + 40, 60)
    failed = [code for code in load.codes if code != 200]
    assert replaced, f"not replaced; codes after the kill: {load.codes[before:][:50]}"
    assert len(failed) <= threads * len(victims), failed
    assert all(code >= 500 for code in failed)
    assert load.codes[-10:] == [200] * 10
