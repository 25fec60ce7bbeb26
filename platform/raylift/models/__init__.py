"""Models: the registry, the builtin models (mlp, cnn, gpt) and user builders."""

from raylift.models import cnn, gpt, mlp
from raylift.models.base import MODELS, build_model, import_builder

__all__ = ["MODELS", "build_model", "cnn", "gpt", "import_builder", "mlp"]
