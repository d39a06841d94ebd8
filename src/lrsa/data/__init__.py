"""Stage 1: benchmark and user data as ``Example`` records."""

from lrsa.data.registry import DATASETS, data_checksums, fetch, load_dataset, resolve_data_dir
from lrsa.data.schema import POLARITIES, SPLITS, Aspect, DataError, Example
from lrsa.data.side import side_inputs

__all__ = ["DATASETS", "POLARITIES", "SPLITS", "Aspect", "DataError", "Example", "data_checksums",
           "fetch", "load_dataset", "resolve_data_dir", "side_inputs"]
