"""The built-in GPT: shapes, tying, init, causality, context length, generation, learning."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from raylift.data.base import DatasetInfo
from raylift.errors import SpecError
from raylift.models import build_model
from raylift.models.gpt import GPT, GPTBlock

TEXT = DatasetInfo(task="language_modeling", input_shape=(16,), vocab_size=256, input_dtype="int64")


def _gpt(**params) -> GPT:
    model = build_model("gpt", None, {"embed_dim": 32, "num_heads": 4, **params}, TEXT)
    assert isinstance(model, GPT)
    return model


def test_embed_dim_must_divide_by_heads_message() -> None:
    with pytest.raises(ValidationError, match=r"embed_dim \(30\) must be divisible by num_heads"):
        build_model("gpt", None, {"embed_dim": 30, "num_heads": 4}, TEXT)


def test_gpt_shapes_blocks_and_tying() -> None:
    model = _gpt(num_layers=3)
    idx = torch.randint(0, 256, (2, 16))
    assert model(idx).shape == (2, 16, 256)
    assert model(idx[:, :5]).shape == (2, 5, 256)
    blocks = [m for m in model.modules() if isinstance(m, GPTBlock)]
    assert len(blocks) == 3
    assert model.head.weight is model.tok_emb.weight
    distinct = {id(p) for p in model.parameters()}
    assert len(distinct) == len(list(model.parameters()))  # the tied weight counts once
    with pytest.raises(ValueError, match="exceeds context_length 16"):
        model(torch.zeros(1, 17, dtype=torch.int64))


def test_gpt_init_is_gpt2_style() -> None:
    torch.manual_seed(0)
    model = _gpt(num_layers=2, embed_dim=128)
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.1)
    proj = model.blocks[0].mlp.proj.weight.std().item()
    assert proj == pytest.approx(0.02 / math.sqrt(4), rel=0.1)
    assert torch.all(model.blocks[0].attn.qkv.bias == 0)


def test_gpt_is_causal() -> None:
    torch.manual_seed(0)
    model = _gpt().eval()
    idx = torch.randint(0, 256, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % 256
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-4)


def test_gpt_context_length() -> None:
    assert _gpt().context_length == 16
    assert _gpt(context_length=32)(torch.zeros(1, 32, dtype=torch.int64)).shape == (1, 32, 256)
    with pytest.raises(SpecError, match="shorter than the data's context 16"):
        _gpt(context_length=8)


def test_gpt_generate() -> None:
    torch.manual_seed(0)
    model = _gpt().train()
    prompt = torch.randint(0, 256, (2, 10))
    out = model.generate(prompt, 20, top_k=5, generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 30) and torch.equal(out[:, :10], prompt)  # crops past 16
    again = model.generate(prompt, 20, top_k=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert model.training  # mode restored
    greedy = model.generate(prompt, 5, temperature=0)
    assert torch.equal(greedy, model.generate(prompt, 5, temperature=0))


def test_gpt_learns() -> None:
    """Plain gradient descent memorises a small batch; every parameter gets a gradient."""
    torch.manual_seed(0)
    model = _gpt(num_layers=1)
    idx = torch.randint(0, 256, (4, 17))
    losses = []
    for _ in range(20):
        logits = model(idx[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 256), idx[:, 1:].reshape(-1))
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                assert param.grad is not None
                param -= 1.0 * param.grad
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(256), rel=0.05)
    assert losses[-1] < losses[0] - 1.0
