"""The model registry: names, params, task checks and user builders by import path."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from raylift.data.base import DatasetInfo
from raylift.errors import RegistryError, SpecError
from raylift.models import MODELS, build_model, import_builder

DIGITS = DatasetInfo(task="classification", input_shape=(64,), num_classes=10)
TEXT = DatasetInfo(task="language_modeling", input_shape=(16,), vocab_size=256, input_dtype="int64")


def test_registered_names_and_descriptions() -> None:
    assert MODELS.names() == ["cnn", "gpt", "hf", "mlp"]
    for name in MODELS.names():
        for field_name, field in MODELS.get(name).params_model.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


def test_unknown_model_name_suggests() -> None:
    with pytest.raises(RegistryError, match=r'did you mean "gpt"\?\); known: cnn, gpt, hf, mlp'):
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


def test_models_check_the_task() -> None:
    with pytest.raises(SpecError, match="classification"):
        build_model("mlp", None, {}, TEXT)
    with pytest.raises(SpecError, match="language modelling"):
        build_model("gpt", None, {}, DIGITS)


def test_user_import_path_builder() -> None:
    model = build_model(None, "raylift.testing.custom_model:build", {"hidden": 8}, DIGITS)
    assert model(torch.randn(2, 64)).shape == (2, 10)
    assert callable(import_builder("raylift.testing.custom_model:build"))
    with pytest.raises(RegistryError, match=r"not nn\.Module"):
        build_model(None, "raylift.testing.custom_model:not_a_module", {}, DIGITS)
    with pytest.raises(RegistryError, match="no callable 'missing'"):
        import_builder("raylift.testing.custom_model:missing")
    with pytest.raises(RegistryError, match="cannot import"):
        import_builder("raylift.testing.no_such_module:build")
    with pytest.raises(RegistryError, match="must look like"):
        import_builder("raylift.testing.custom_model.build")
