"""Fine-tuning: freezing by name, LoRA adapters, and their merge into the export (no Ray)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from raylift.data.base import PreparedData, load_dataset
from raylift.errors import ExportError, SpecError
from raylift.models.base import build_model
from raylift.models.lora import (
    DEFAULT_TARGETS,
    LoraLinear,
    apply_lora,
    count_parameters,
    freeze,
    merge_lora_state_dict,
    prepare_for_finetune,
)
from raylift.specs import spec_from_dict
from raylift.specs.job import TrainSpec
from raylift.specs.resolve import resolve
from raylift.testing.specs import LORA as BASE_LORA
from raylift.testing.specs import TINY_GPT, lora_job
from raylift.training.setup import make_optimizer, plan_finetune

LORA = {**BASE_LORA, "targets": list(DEFAULT_TARGETS)}
ADAMW = TrainSpec(optimizer="adamw", lr=1e-2, weight_decay=0.01)
ADAPTED = [
    f"blocks.{i}.{m}" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
]


@pytest.fixture(scope="module")
def data() -> PreparedData:
    text = {"corpus": "licenses", "context_length": 32}
    return load_dataset("text", text, val_fraction=0.1, seed=0)


def gpt(data: PreparedData) -> nn.Module:
    torch.manual_seed(0)
    return build_model("gpt", None, TINY_GPT, data.info)


def train_steps(model: nn.Module, data: PreparedData, steps: int = 3) -> torch.optim.Optimizer:
    optimizer = make_optimizer(model, ADAMW)
    model.train()
    for step in range(steps):
        inputs = data.train_inputs[step * 8 : step * 8 + 8]
        targets = data.train_targets[step * 8 : step * 8 + 8]
        logits = model(inputs)
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer


@torch.no_grad()
def logits_of(model: nn.Module, data: PreparedData) -> torch.Tensor:
    return model.eval()(data.val_inputs[:4])


def test_lora_keeps_base_keys_and_starts_equal_to_the_base(data: PreparedData) -> None:
    base = gpt(data)
    adapted = copy.deepcopy(base)
    assert apply_lora(adapted, rank=4, alpha=8.0) == sorted(ADAPTED)
    for name in ADAPTED:
        layer = adapted.get_submodule(name)
        assert isinstance(layer, LoraLinear) and layer.scaling == 2.0
        assert layer.lora_a.shape == (4, layer.in_features)
        assert torch.count_nonzero(layer.lora_b) == 0
    extra = set(adapted.state_dict()) - set(base.state_dict())
    assert extra == {f"{n}.{k}" for n in ADAPTED for k in ("lora_a", "lora_b")}
    assert set(base.state_dict()) <= set(adapted.state_dict())
    assert torch.equal(logits_of(adapted, data), logits_of(base, data))


def test_only_the_adapters_train(data: PreparedData) -> None:
    model = gpt(data)
    apply_lora(model, **LORA)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.{k}" for n in ADAPTED for k in ("lora_a", "lora_b")}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = train_steps(model, data)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for n, p in model.named_parameters() if n in trainable
    }
    for key, value in model.state_dict().items():
        if key.endswith(("lora_a", "lora_b")):
            assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key  # bit-identical base weights


def test_merged_weights_load_strictly_into_the_plain_gpt(data: PreparedData) -> None:
    adapted = gpt(data)
    apply_lora(adapted, **{**LORA, "dropout": 0.1})
    train_steps(adapted, data)
    state = adapted.state_dict()
    snapshot = {k: v.clone() for k, v in state.items()}
    merged = merge_lora_state_dict(state, LORA)
    assert not any("lora" in key for key in merged)
    assert all(torch.equal(state[k], snapshot[k]) for k in state)  # the input is untouched
    plain = gpt(data)
    plain.load_state_dict(merged, strict=True)
    torch.testing.assert_close(logits_of(plain, data), logits_of(adapted, data), atol=1e-5, rtol=0)


def test_merge_refuses_unpaired_adapters() -> None:
    state = {"fc.weight": torch.zeros(3, 2), "fc.lora_a": torch.zeros(1, 2)}
    with pytest.raises(ExportError, match="no lora_b"):
        merge_lora_state_dict(state, LORA)
    with pytest.raises(ExportError, match="no lora_a"):
        merge_lora_state_dict(
            {"fc.weight": torch.zeros(3, 2), "fc.lora_b": torch.zeros(3, 1)}, LORA
        )


def test_freeze_freezes_exactly_the_matching_parameters(data: PreparedData) -> None:
    model = gpt(data)
    frozen = freeze(model, ["tok_emb.*", "blocks.0.*"])
    assert "blocks.0.attn.qkv.weight" in frozen and "tok_emb.weight" in frozen
    assert not any(n.startswith(("blocks.1", "ln_f", "pos_emb")) for n in frozen)
    for name, param in model.named_parameters():
        assert param.requires_grad == (name not in frozen), name
    optimizer = make_optimizer(model, ADAMW)
    given = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert given == {id(p) for p in model.parameters() if p.requires_grad}
    counts = count_parameters(model)
    assert 0 < counts.trainable < counts.total
    assert counts.describe().startswith(f"trainable {counts.share:.1%} of parameters")


def test_freeze_errors_name_the_key_and_real_names(data: PreparedData) -> None:
    with pytest.raises(SpecError) as info:
        freeze(gpt(data), ["blocks.0"])
    assert info.value.key == "finetune.freeze"
    assert "'blocks.0' matches no parameter" in str(info.value)
    assert "did you mean 'blocks.0.*'" in str(info.value) and "tok_emb.weight" in str(info.value)
    with pytest.raises(SpecError, match="freezes every parameter") as info:
        freeze(gpt(data), ["*.weight", "*.bias"])
    assert info.value.key == "finetune.freeze"


def test_lora_target_errors_name_the_key_and_real_layers(data: PreparedData) -> None:
    with pytest.raises(SpecError) as info:
        apply_lora(gpt(data), targets=["*.attn.qkv", "*.attention.q"])
    assert info.value.key == "finetune.lora.targets"
    assert "'*.attention.q' matches no Linear layer" in str(info.value)
    assert "blocks.0.attn.qkv" in str(info.value)
    with pytest.raises(SpecError, match="tied weights") as info:
        apply_lora(gpt(data), targets=["head"])  # the head shares the token embedding
    assert info.value.key == "finetune.lora.targets"


def test_prepare_for_finetune_and_the_driver_check(data: PreparedData) -> None:
    model = gpt(data)
    assert prepare_for_finetune(model, None) is model
    assert count_parameters(model).trainable == count_parameters(model).total
    plain = {k: v for k, v in lora_job().items() if k != "finetune"}
    assert plan_finetune(resolve(spec_from_dict(plain)), data.info) is None
    finetune = {"freeze": [], "lora": LORA}
    prepare_for_finetune(model, finetune)
    job = resolve(spec_from_dict({**plain, "finetune": {"lora": LORA}}))
    assert plan_finetune(job, data.info) == count_parameters(model)  # meta build, same counts
    nope = {"lora": {**LORA, "targets": ["nope"]}}
    with pytest.raises(SpecError, match="'nope' matches no Linear layer"):
        plan_finetune(resolve(spec_from_dict({**plain, "finetune": nope})), data.info)


def test_export_from_a_lora_checkpoint_is_the_plain_model(
    data: PreparedData, tmp_path: Path
) -> None:
    from raylift.artifacts.checkpoints import save_state
    from raylift.artifacts.export import load_weights
    from raylift.models.exported import load_export
    from raylift.training.exporting import export_from_checkpoint

    job = resolve(spec_from_dict(lora_job()))
    spec = job.as_json()
    adapted = prepare_for_finetune(gpt(data), spec["finetune"])
    train_steps(adapted, data)
    checkpoint = tmp_path / "checkpoint_00000003"
    state = {
        "model": adapted.state_dict(),
        "step": 3,
        "spec": json.dumps(spec),
        "metrics": json.dumps({"step": 3, "val_loss": 1.0}),
    }
    save_state(str(checkpoint), state, extra={"step": 3})
    out = tmp_path / "model"
    assert export_from_checkpoint(str(checkpoint), str(out), data)["step"] == 3
    assert not any("lora" in key for key in load_weights(str(out)))
    exported = load_export(str(out))
    assert not any(isinstance(m, LoraLinear) for m in exported.model.modules())
    torch.testing.assert_close(
        logits_of(exported.model, data), logits_of(adapted, data), atol=1e-5, rtol=0
    )
    assert exported.manifest["spec"]["finetune"]["lora"]["rank"] == LORA["rank"]
