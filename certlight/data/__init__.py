"""Datasets with example indices, their registry (mean/std, files), and the datamodule."""

from certlight.data.datamodule import CertifiedDataModule, default_data_root
from certlight.data.registry import DATASETS, DatasetInfo, check_files, dataset_info

__all__ = ["DATASETS", "CertifiedDataModule", "DatasetInfo", "check_files", "dataset_info", "default_data_root"]
