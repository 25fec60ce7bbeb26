"""MFU arithmetic (training/flops.py) and the Ray-free worker step under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raylift.models.gpt import GPT
from raylift.testing import REPO_ROOT
from raylift.testing.specs import TINY_LLAMA
from raylift.training import flops


def test_gpt_flops_count_each_block_and_the_tied_head_once() -> None:
    layers, width, vocab, context = 3, 48, 256, 32
    model = GPT(vocab, context, num_layers=layers, num_heads=4, embed_dim=width)
    # qkv 3d^2 + proj d^2 + mlp 8d^2 per block; the head shares the embedding's weight.
    assert flops.matmul_parameters(model) == layers * 12 * width * width + width * vocab
    expected = 6.0 * (layers * 12 * width**2 + width * vocab) + 12.0 * layers * width * context
    assert flops.flops_per_token(model, context) == expected


def test_hf_llama_flops_follow_its_config() -> None:
    from raylift.data.base import DatasetInfo
    from raylift.models.hf import HFParams, build_hf

    info = DatasetInfo(task="language_modeling", input_shape=(16,), vocab_size=256)
    model = build_hf(HFParams(config=dict(TINY_LLAMA)), info)
    c = TINY_LLAMA
    d, inter, heads, kv = (
        c["hidden_size"],
        c["intermediate_size"],
        c["num_attention_heads"],
        c["num_key_value_heads"],
    )
    head_dim = d // heads
    per_layer = 2 * d * d + 2 * d * kv * head_dim + 3 * d * inter  # q, o, k, v, SwiGLU
    head = d * c["vocab_size"]
    assert flops.matmul_parameters(model) == c["num_hidden_layers"] * per_layer + head
    assert flops.flops_per_token(model, 16) == pytest.approx(
        6.0 * (c["num_hidden_layers"] * per_layer + head) + 12.0 * c["num_hidden_layers"] * d * 16
    )


def test_mfu_needs_a_known_peak() -> None:
    assert flops.peak_flops(torch.device("cpu")) is None
    assert flops.mfu(1000.0, 1e9, None, 1) is None
    assert flops.mfu(1000.0, 1e9, 1e13, 2) == pytest.approx(0.05)


@pytest.mark.slow
def test_gpu_train_torchrun_mode_runs_the_worker_step_without_ray(tmp_path: Path) -> None:
    """benchmarks/gpu_train.py --torchrun: 2 gloo ranks, FSDP, the tiny Llama; no Ray
    imported (the device machine has none)."""
    out = tmp_path / "result.json"
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "ray.py").write_text("raise ImportError('Ray must not be imported here')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), str(REPO_ROOT / "platform")]),
    }
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"),
        str(REPO_ROOT / "benchmarks" / "gpu_train.py"),
        *("--torchrun", "--config", "llama-tiny", "--no-write", "--json", str(out)),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.read_text())
    run = payload["runs"]["torchrun"]
    assert run["world_size"] == 2 and run["strategy"] == "fsdp"
    assert payload["summary"]["tokens_per_s"] > 0 and payload["summary"]["mfu"] is None
    assert run["losses"][-1] < run["losses"][0]  # it learns
    assert run["flops_per_token"] > 6 * run["parameters"] * 0.5
