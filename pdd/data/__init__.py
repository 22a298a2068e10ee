"""Datasets: registry, download, preparation into one canonical layout, synthetic demo data, Dataset.

`PreparedDataset` is imported lazily so that the data CLI does not pay for importing torch.
"""

from pdd.data.registry import DATASETS, DatasetSpec, get_dataset
from pdd.data.split import read_split_csv, split_sha256
from pdd.data.synthetic import generate

__all__ = ["DATASETS", "DatasetSpec", "PreparedDataset", "generate", "get_dataset", "read_split_csv", "split_sha256"]


def __getattr__(name: str):
    if name == "PreparedDataset":
        from pdd.data.dataset import PreparedDataset

        return PreparedDataset
    raise AttributeError(f"module 'pdd.data' has no attribute {name!r}")
