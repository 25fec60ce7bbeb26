"""Models: the registry, the builtin models (mlp, cnn, gpt), HF models (hf) and user builders."""

from raylift.models import cnn, gpt, hf, mlp
from raylift.models.base import MODELS, build_model, import_builder

__all__ = ["MODELS", "build_model", "cnn", "gpt", "hf", "import_builder", "mlp"]
