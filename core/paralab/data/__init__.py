"""Shared data: each dataset loaded once per process; every split or partition an index view.

>>> from paralab.data import load_dataset
>>> digits = load_dataset("digits")
>>> train = digits.split("train")
>>> len(train), digits.info.n_classes
(1437, 10)
"""

from paralab.data.cache import clear_cache, load_dataset
from paralab.data.files import DATA_ENV, DataNotFoundError, resolve_root
from paralab.data.shared import DatasetInfo, DataView, SharedDataset

__all__ = [
    "DATA_ENV",
    "DataNotFoundError",
    "DataView",
    "DatasetInfo",
    "SharedDataset",
    "clear_cache",
    "load_dataset",
    "resolve_root",
]
