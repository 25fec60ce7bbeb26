"""Data sets: the registry and the builtin sources (digits, text, tabular, chat, tokens).

Importing this package registers every builtin data set; it does not import Ray.
"""

from raylift.data import chat, digits, tabular, text, tokens
from raylift.data.base import DATASETS, DatasetInfo, PreparedData, load_dataset
from raylift.data.preprocessing import preprocess

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "PreparedData",
    "chat",
    "digits",
    "load_dataset",
    "preprocess",
    "tabular",
    "text",
    "tokens",
]
