"""The model registry: mlp, cnn, gpt and user import-path builders."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from raylift.data.base import DatasetInfo
from raylift.errors import RegistryError, SpecError
from raylift.models import MODELS, build_model, import_builder
from raylift.models.gpt import GPT, GPTBlock

REPO = Path(__file__).resolve().parents[2]
DIGITS = DatasetInfo(task="classification", input_shape=(64,), num_classes=10)
TEXT = DatasetInfo(task="language_modeling", input_shape=(16,), vocab_size=256, input_dtype="int64")


def _gpt(**params) -> GPT:
    model = build_model("gpt", None, {"embed_dim": 32, "num_heads": 4, **params}, TEXT)
    assert isinstance(model, GPT)
    return model


def test_registered_names_and_descriptions() -> None:
    assert MODELS.names() == ["cnn", "gpt", "mlp"]
    for name in MODELS.names():
        for field_name, field in MODELS.get(name).params_model.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


def test_unknown_model_name_suggests() -> None:
    with pytest.raises(RegistryError, match=r'did you mean "gpt"\?\); known: cnn, gpt, mlp'):
        build_model("gtp", None, {}, TEXT)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mlp", {"hidden_size": [8]}),
        ("mlp", {"activation": "swish"}),
        ("mlp", {"hidden_sizes": [0]}),
        ("cnn", {"image_shape": [8, 8]}),
        ("cnn", {"kernel_size": 4}),
        ("gpt", {"num_layer": 2}),
        ("gpt", {"embed_dim": 30, "num_heads": 4}),
    ],
)
def test_bad_params_are_rejected(name: str, params: dict) -> None:
    with pytest.raises(ValidationError):
        MODELS.parse_params(name, params)


def test_embed_dim_must_divide_by_heads_message() -> None:
    with pytest.raises(ValidationError, match=r"embed_dim \(30\) must be divisible by num_heads"):
        build_model("gpt", None, {"embed_dim": 30, "num_heads": 4}, TEXT)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_mlp_output_shape(activation: str) -> None:
    model = build_model(
        "mlp", None, {"hidden_sizes": [32, 16], "dropout": 0.1, "activation": activation}, DIGITS
    )
    assert model(torch.randn(5, 64)).shape == (5, 10)
    linear = build_model("mlp", None, {"hidden_sizes": []}, DIGITS)
    assert sum(p.numel() for p in linear.parameters()) == 64 * 10 + 10


def test_cnn_output_shape_and_image_shape() -> None:
    model = build_model("cnn", None, {}, DIGITS)
    assert model.image_shape == (1, 8, 8)
    assert model(torch.randn(3, 64)).shape == (3, 10)
    wide = DatasetInfo(task="classification", input_shape=(48,), num_classes=4)
    given = build_model("cnn", None, {"image_shape": [3, 4, 4], "channels": [8]}, wide)
    assert given(torch.randn(2, 48)).shape == (2, 4)
    with pytest.raises(SpecError, match="cannot infer a square image from 48"):
        build_model("cnn", None, {}, wide)
    with pytest.raises(SpecError, match="does not hold"):
        build_model("cnn", None, {"image_shape": [1, 7, 7]}, DIGITS)


def test_models_check_the_task() -> None:
    with pytest.raises(SpecError, match="classification"):
        build_model("mlp", None, {}, TEXT)
    with pytest.raises(SpecError, match="language modelling"):
        build_model("gpt", None, {}, DIGITS)


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


def test_user_import_path_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    model = build_model(None, "tests.unit.custom_model:build", {"hidden": 8}, DIGITS)
    assert model(torch.randn(2, 64)).shape == (2, 10)
    assert callable(import_builder("tests.unit.custom_model:build"))
    with pytest.raises(RegistryError, match=r"not nn\.Module"):
        build_model(None, "tests.unit.custom_model:not_a_module", {}, DIGITS)
    with pytest.raises(RegistryError, match="no callable 'missing'"):
        import_builder("tests.unit.custom_model:missing")
    with pytest.raises(RegistryError, match="cannot import"):
        import_builder("tests.unit.no_such_module:build")
    with pytest.raises(RegistryError, match="must look like"):
        import_builder("tests.unit.custom_model.build")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_train_compile_matches_eager_forward_and_backward() -> None:
    """``train.compile``: the model the loop calls is inductor-compiled and equal to eager."""
    from raylift.training.setup import compiled_model

    info = DatasetInfo(
        task="language_modeling", input_shape=(16,), vocab_size=256, input_dtype="int64"
    )
    torch.manual_seed(0)
    model = build_model("gpt", None, {"num_layers": 1, "num_heads": 2, "embed_dim": 32}, info)
    assert compiled_model(model, {"compile": False}) is None
    compiled = compiled_model(model, {"compile": True})
    assert compiled is not None and compiled is not model
    tokens = torch.randint(0, 256, (2, 16))
    compiled(tokens).float().pow(2).mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = model(tokens)
    eager.float().pow(2).mean().backward()
    assert torch.allclose(compiled(tokens), eager, atol=1e-5)
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(got, want, atol=1e-5)
