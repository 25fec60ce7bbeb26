"""The ``hf`` model: HF causal LMs from tiny configs (offline), wrapped for raylift."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from raylift.data.base import DatasetInfo
from raylift.errors import SpecError
from raylift.models import MODELS, build_model
from raylift.models.hf import CausalLM, HFParams
from raylift.specs import spec_from_dict
from raylift.testing.specs import TINY_LLAMA

CONTEXT = 16
TEXT = DatasetInfo(
    task="language_modeling", input_shape=(CONTEXT,), vocab_size=256, input_dtype="int64"
)
LLAMA: dict[str, Any] = dict(TINY_LLAMA)
QWEN2: dict[str, Any] = {**LLAMA, "model_type": "qwen2", "tie_word_embeddings": True}
GPT2: dict[str, Any] = {
    "model_type": "gpt2",
    "vocab_size": 256,
    "n_embd": 32,
    "n_layer": 3,
    "n_head": 2,
    "n_positions": 64,
    "bos_token_id": 0,
    "eos_token_id": 0,
}


def _hf(config: dict[str, Any] | None = None, **params: Any) -> CausalLM:
    if config is not None:
        params["config"] = config
    model = build_model("hf", None, params, TEXT)
    assert isinstance(model, CausalLM)
    return model


def _ids(batch: int = 2, length: int = CONTEXT) -> torch.Tensor:
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(0))


def test_importing_the_models_does_not_import_transformers() -> None:
    import subprocess

    code = "import sys, raylift.models as m; assert 'hf' in m.MODELS.names(); " + (
        "print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert MODELS.parse_params("hf", {"config": LLAMA}).dtype == "float32"


@pytest.mark.parametrize(
    ("config", "layer", "layers"),
    [(LLAMA, "LlamaDecoderLayer", 2), (QWEN2, "Qwen2DecoderLayer", 2), (GPT2, "GPT2Block", 3)],
)
def test_builds_from_a_config_with_logits_blocks_and_stable_keys(
    config: dict[str, Any], layer: str, layers: int
) -> None:
    model = _hf(config)
    logits = model(_ids())
    assert logits.shape == (2, CONTEXT, 256) and logits.dtype == torch.float32
    assert [type(b).__name__ for b in model.blocks] == [layer] * layers
    assert isinstance(model.blocks, torch.nn.ModuleList)
    keys = list(model.state_dict())
    assert all(k.startswith("hf.") for k in keys)
    assert not any(k.startswith("blocks.") for k in keys)  # the layers appear once
    assert model.context_length == 64 and model.vocab_size == 256
    # Same seed, same weights: the state dict is all the export needs.
    torch.manual_seed(1)
    again = _hf(config)
    again.load_state_dict(model.state_dict())
    model.eval(), again.eval()  # GPT-2 has dropout
    with torch.no_grad():
        assert torch.equal(again(_ids()), model(_ids()))


def test_the_fsdp_units_are_the_decoder_layers_and_tied_weights_stay_in_the_root() -> None:
    from raylift.training.sharding import shard_units

    model = _hf(QWEN2)
    assert shard_units(model) == list(model.blocks)
    hf = model.hf
    assert hf.lm_head.weight is hf.model.embed_tokens.weight
    in_blocks = {id(p) for block in model.blocks for p in block.parameters()}
    assert id(hf.lm_head.weight) not in in_blocks


def test_dtype_and_attention_implementation() -> None:
    model = _hf(LLAMA, dtype="bfloat16", attn_implementation="eager")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.hf.config._attn_implementation == "eager"
    assert model(_ids()).shape == (2, CONTEXT, 256)


def test_activation_checkpointing_recomputes_each_layer_with_the_same_grads() -> None:
    model = _hf(LLAMA)
    model.train()
    inputs, targets = _ids(), _ids().roll(1, dims=1)
    calls: list[int] = []
    # HF recomputes inside the layer's forward (its hooks, FSDP's too, run once): count
    # the calls of a module inside it.
    model.blocks[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    results = []
    for enabled in (False, True):
        model.activation_checkpointing = enabled
        assert model.activation_checkpointing is enabled
        assert model.hf.is_activation_checkpointing is enabled
        calls.clear()
        loss = torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        results.append((grads, len(calls)))
    (grads_off, calls_off), (grads_on, calls_on) = results
    assert (calls_off, calls_on) == (1, 2)
    for name, grad in grads_off.items():
        torch.testing.assert_close(grads_on[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    model.activation_checkpointing = False
    assert not model.hf.is_activation_checkpointing


def test_generate_appends_tokens_greedily_and_keeps_the_mode() -> None:
    model = _hf(LLAMA)
    model.train()
    prompt = _ids(1, 5)
    out = model.generate(prompt, 4, temperature=0.0)
    assert out.shape == (1, 9) and torch.equal(out[:, :5], prompt)
    assert torch.equal(model.generate(prompt, 4, temperature=0.0), out)  # greedy: the same
    assert model.training
    sampled = model.generate(prompt, 3, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert sampled.shape == (1, 8)


def test_loads_a_saved_pretrained_directory_with_the_same_logits(tmp_path: Path) -> None:
    source = _hf(LLAMA)
    source.hf.save_pretrained(tmp_path / "llama")
    loaded = _hf(path=str(tmp_path / "llama"))
    source.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(_ids()), source(_ids()), rtol=0, atol=0)
    # A config.json alone builds the architecture with new weights.
    fresh = _hf(config_path=str(tmp_path / "llama" / "config.json"))
    assert set(fresh.state_dict()) == set(source.state_dict())
    assert not torch.equal(fresh.state_dict()["hf.lm_head.weight"], source.hf.lm_head.weight)


def test_a_relative_local_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    assert HFParams(path="m").path == str(tmp_path / "m")
    assert HFParams(path="org/some-model").path == "org/some-model"  # a hub id stays


@pytest.mark.parametrize(
    "params",
    [{}, {"config": LLAMA, "path": "/x"}, {"config_path": "/x", "path": "/y"}, {"config": {}}],
)
def test_exactly_one_source_with_a_model_type(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"exactly one of path|model_type"):
        HFParams.model_validate(params)
    with pytest.raises(SpecError, match=r"exactly one of path|model_type") as caught:
        spec_from_dict(_job(params))
    assert caught.value.key is not None and caught.value.key.startswith("model.params")


def test_unknown_model_type() -> None:
    with pytest.raises(SpecError, match="unknown HF model_type 'nope'") as caught:
        _hf({**LLAMA, "model_type": "nope"})
    assert caught.value.key == "model.params.config.model_type"


def test_a_folder_that_is_not_an_hf_model(tmp_path: Path) -> None:
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(SpecError, match="not a Hugging Face model directory") as caught:
        _hf(path=str(tmp_path))
    assert caught.value.key == "model.params.path"
    with pytest.raises(SpecError, match="no such Hugging Face model directory") as caught:
        _hf(path=str(tmp_path / "missing"))
    assert caught.value.key == "model.params.path"
    with pytest.raises(SpecError, match="cannot read") as caught:
        _hf(config_path=str(tmp_path / "missing.json"))
    assert caught.value.key == "model.params.config_path"


def test_a_vocabulary_smaller_than_the_data_s() -> None:
    with pytest.raises(SpecError, match=r"vocab_size 128 is smaller than the data's .* 256") as e:
        _hf({**LLAMA, "vocab_size": 128})
    assert e.value.key == "model.params.config.vocab_size"


def test_a_context_longer_than_the_model_s_positions(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"max_position_embeddings 8 is shorter .* 16") as e:
        _hf({**LLAMA, "max_position_embeddings": 8})
    assert e.value.key == "model.params.config.max_position_embeddings"
    # GPT-2 names it n_positions; the check is the same. From a file, the key is the file's.
    (tmp_path / "config.json").write_text(json.dumps({**GPT2, "n_positions": 8}))
    with pytest.raises(SpecError, match="max_position_embeddings 8 is shorter") as e:
        _hf(config_path=str(tmp_path / "config.json"))
    assert e.value.key == "model.params.config_path"


def test_a_classification_data_set_is_refused() -> None:
    digits = DatasetInfo(task="classification", input_shape=(64,), num_classes=10)
    with pytest.raises(SpecError, match="language modelling"):
        build_model("hf", None, {"config": LLAMA}, digits)


def _remote_code_model(folder: Path, model_type: str) -> Path:
    """A saved tiny Llama whose config points at code in its folder (auto_map)."""
    _hf(LLAMA).hf.save_pretrained(folder)
    marker = folder / "EXECUTED"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForCausalLM": "evil.EvilForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return marker


def test_remote_code_is_refused_unless_trusted_and_nothing_runs(tmp_path: Path) -> None:
    marker = _remote_code_model(tmp_path / "remote", "evil_lm")
    with pytest.raises(SpecError, match="trust_remote_code: true") as caught:
        _hf(path=str(tmp_path / "remote"))
    assert caught.value.key == "model.params.path"
    with pytest.raises(SpecError, match="trust_remote_code: true") as caught:
        _hf(config_path=str(tmp_path / "remote" / "config.json"))
    assert caught.value.key == "model.params.config_path"
    assert not marker.exists()
    assert not any("evil" in name for name in sys.modules)


def test_an_auto_map_of_a_known_architecture_runs_transformers_own_code(tmp_path: Path) -> None:
    marker = _remote_code_model(tmp_path / "known", "llama")
    model = _hf(path=str(tmp_path / "known"))
    assert type(model.hf).__name__ == "LlamaForCausalLM"
    assert not marker.exists()


def _job(params: dict[str, Any], **train: Any) -> dict[str, Any]:
    return {
        "name": "hf",
        "model": {"name": "hf", "params": params},
        "data": {"name": "text", "params": {"corpus": "licenses", "context_length": 32}},
        "train": {"epochs": 1, **train},
    }


def test_a_job_spec_with_an_hf_model_and_text_data_validates() -> None:
    spec = spec_from_dict(_job({"config": LLAMA}, activation_checkpointing=True))
    assert spec.model is not None and spec.model.name == "hf"
    assert spec.train.activation_checkpointing
    with pytest.raises(SpecError, match="did you mean"):
        spec_from_dict(_job({"config": LLAMA, "dtyp": "bfloat16"}))
    with pytest.raises(SpecError, match="dtype"):
        spec_from_dict(_job({"config": LLAMA, "dtype": "int8"}))


def test_a_trained_model_beats_uniform_quickly() -> None:
    """A few AdamW steps on a repeating sequence: the wrapper trains like any model."""
    model = _hf(LLAMA)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.arange(CONTEXT + 1).repeat(4, 1) % 256
    for _ in range(30):
        logits = model(data[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), data[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < math.log(256) / 4


def test_the_serving_completion_path_takes_it() -> None:
    """serving.generate runs any LM through forward + ``context_length`` (bytes here)."""
    from raylift.serving.generate import Sampling, complete

    model = _hf(LLAMA).eval()
    bytes_ = {"type": "bytes", "vocab_size": 256, "context_length": CONTEXT, "encoding": "utf-8"}
    done = complete(model, bytes_, "Licensed under", Sampling(max_tokens=5, temperature=0.0))
    assert done.completion_tokens == 5 and done.finish_reason == "length"
