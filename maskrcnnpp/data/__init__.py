"""Nuclei data: DSB 2018 and own-folder conversion and registration, synthetic nuclei, Kaggle run-length CSVs.

Importing this package registers ``dsb2018_{train,val,test,all}`` and
``nuclei_synth_{train,val,test}`` in Detectron2's catalogs (see :mod:`.datasets`);
``setup_datasets(cfg)`` re-registers them from a config.
"""
from .datasets import (  # noqa: F401  (registers the datasets)
    DatasetNotPreparedError,
    NUCLEI_METADATA,
    cache_dir,
    dsb2018_root,
    register_dsb2018,
    register_folders,
    register_nuclei_coco,
    register_synthetic,
    setup_datasets,
)
from .dsb2018 import DatasetError, prepare_dsb2018  # noqa: F401
from .folder import prepare_folder  # noqa: F401
from ..utils.kaggle_rle import read_kaggle_csv, rle_decode, rle_encode, write_kaggle_csv  # noqa: F401
from .synthetic import build_synthetic_dataset, generate_nuclei_image  # noqa: F401

__all__ = [
    "DatasetError",
    "DatasetNotPreparedError",
    "NUCLEI_METADATA",
    "build_synthetic_dataset",
    "cache_dir",
    "dsb2018_root",
    "generate_nuclei_image",
    "prepare_dsb2018",
    "prepare_folder",
    "read_kaggle_csv",
    "register_dsb2018",
    "register_folders",
    "register_nuclei_coco",
    "register_synthetic",
    "rle_decode",
    "rle_encode",
    "setup_datasets",
    "write_kaggle_csv",
]
