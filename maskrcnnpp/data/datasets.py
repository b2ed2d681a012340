"""Detectron2 registration of the nuclei datasets (COCO json + images, one class "nucleus").

* ``dsb2018_{train,val,test,all}``: a folder prepared by ``datasets/prepare_dsb2018.py``. The root
  is resolved whenever the data or its metadata paths are read: ``DATASETS.NUCLEI.DSB2018_ROOT``
  when set through :func:`setup_datasets`, else ``$MASKRCNNPP_DSB2018``, else
  ``$DETECTRON2_DATASETS/dsb2018``, else ``./datasets/dsb2018``. An unprepared root raises
  :class:`DatasetNotPreparedError` with the command that prepares it.
* ``<name>_{train,val,test,all}``: a folder of one's own images prepared by
  ``datasets/prepare_folder.py``, registered by name from ``DATASETS.NUCLEI.FOLDERS`` through
  :func:`setup_datasets` (or :func:`register_folders`). A folder that is not prepared raises
  :class:`DatasetNotPreparedError` naming the key and the folder when the data are first read.
* ``nuclei_synth_{train,val,test}``: synthetic nuclei (:mod:`maskrcnnpp.data.synthetic`),
  generated on first use into ``$MASKRCNNPP_CACHE`` (default ``~/.cache/maskrcnnpp``), keyed by
  image count, size, seed and generator version; sizes from ``DATASETS.NUCLEI.SYNTH_IMAGES`` /
  ``SYNTH_SIZE`` through :func:`setup_datasets`.

Metadata of every name: ``thing_classes=["nucleus"]``, ``evaluator_type="nuclei"``, ``json_file``,
``image_root`` (what COCOEvaluator and the nuclei evaluator read). Segmentations stay compressed
RLE dicts, so models must use ``INPUT.MASK_FORMAT = "bitmask"``.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.datasets import load_coco_json

from ..config import get_maskrcnnpp_cfg
from ..errors import UserError

__all__ = [
    "DatasetNotPreparedError",
    "NUCLEI_METADATA",
    "DSB2018_SPLITS",
    "SYNTH_SPLIT_SEEDS",
    "register_nuclei_coco",
    "register_dsb2018",
    "register_synthetic",
    "register_folders",
    "parse_folder_entries",
    "setup_datasets",
    "dsb2018_root",
    "cache_dir",
    "synthetic_dataset_dir",
]

NUCLEI_METADATA = {"thing_classes": ["nucleus"], "evaluator_type": "nuclei", "thing_colors": [(0, 255, 0)]}
DSB2018_SPLITS = ("train", "val", "test", "all")
# Seed of each synthetic split: different seeds give disjoint random streams.
SYNTH_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


class DatasetNotPreparedError(UserError, FileNotFoundError):
    """A registered dataset whose files are not there yet; the message says how to prepare them."""


class _ResolvedPathsMetadata(Metadata):
    """Metadata whose ``json_file`` and ``image_root`` are computed each time they are read.

    ``paths`` is a picklable callable returning ``(json_file, image_root)``; it lets the DSB root
    follow the config/environment at use time, and the synthetic sets be generated on first use.
    """

    @property
    def json_file(self) -> str:
        return str(self.paths()[0])

    @property
    def image_root(self) -> str:
        return str(self.paths()[1])

    def as_dict(self) -> dict:
        out = super().as_dict()
        out.pop("paths", None)
        out.update(json_file=self.json_file, image_root=self.image_root)
        return out


def _replace_registration(name: str, loader: Callable[[], list], metadata: Metadata) -> None:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog[name] = metadata


def register_nuclei_coco(name: str, json_file: str, image_root: str) -> None:
    """Register a COCO-format nuclei dataset under ``name`` with the nuclei metadata.

    Registering the same name again with the same files is a no-op; other files raise ValueError.
    """
    json_file, image_root = str(json_file), str(image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return
        raise ValueError(f"dataset {name!r} is already registered with {meta.get('json_file')}")
    DatasetCatalog.register(name, functools.partial(load_coco_json, json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, **NUCLEI_METADATA)


# ----------------------------------------------------------------------------- DSB 2018

_DSB_ROOT: Dict[str, Optional[str]] = {"root": None}  # set from the config by setup_datasets


def dsb2018_root() -> Path:
    """Root of the prepared DSB 2018 folder in effect now (config, env, DETECTRON2_DATASETS, ./datasets)."""
    root = _DSB_ROOT["root"] or os.environ.get("MASKRCNNPP_DSB2018")
    if not root:
        root = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "dsb2018")
    return Path(root).expanduser().absolute()


def _dsb2018_paths(split: str) -> Tuple[Path, Path]:
    root = dsb2018_root()
    return root / "annotations" / f"{split}.json", root / "images"


def _prepare_command(root: Path) -> str:
    src = os.environ.get("MASKRCNNPP_DSB2018_ZIP") or "PATH/TO/stage1_train.zip"
    return f"python datasets/prepare_dsb2018.py --src {src} --out {root}"


def _load_dsb2018(split: str) -> list:
    json_file, image_root = _dsb2018_paths(split)
    root = json_file.parent.parent
    if not json_file.is_file():
        if split != "all" and (root / "annotations" / "all.json").is_file():
            raise DatasetNotPreparedError(
                f"dsb2018_{split}: {root} was prepared without a split (no {json_file.name}); prepare a "
                f"split copy with: {_prepare_command(Path(str(root) + '_split'))} and point "
                "DATASETS.NUCLEI.DSB2018_ROOT (or MASKRCNNPP_DSB2018) to it"
            )
        raise DatasetNotPreparedError(
            f"dsb2018_{split}: no prepared DSB 2018 data at {root} (missing {json_file}). Prepare it with: "
            f"{_prepare_command(root)} , or set DATASETS.NUCLEI.DSB2018_ROOT / MASKRCNNPP_DSB2018 "
            "to a prepared folder"
        )
    return load_coco_json(str(json_file), str(image_root), f"dsb2018_{split}")


def register_dsb2018(root: Optional[str] = None) -> None:
    """(Re-)register ``dsb2018_{train,val,test,all}``; ``root`` overrides the environment lookup."""
    _DSB_ROOT["root"] = str(root) if root else None
    for split in DSB2018_SPLITS:
        name = f"dsb2018_{split}"
        meta = _ResolvedPathsMetadata(name=name)
        meta.set(paths=functools.partial(_dsb2018_paths, split), **NUCLEI_METADATA)
        _replace_registration(name, functools.partial(_load_dsb2018, split), meta)


# ----------------------------------------------------------------------------- one's own prepared folders

_FOLDERS: Dict[str, str] = {}  # name -> prepared folder, as registered by register_folders
_FOLDER_KEY = "DATASETS.NUCLEI.FOLDERS"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_folder_entries(entries: Iterable[object]) -> Dict[str, str]:
    """``{name: absolute folder}`` of ``DATASETS.NUCLEI.FOLDERS`` entries ([NAME, FOLDER] or "NAME=FOLDER")."""
    out: Dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, str) and "=" in entry:
            name, folder = entry.split("=", 1)
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and all(isinstance(x, str) for x in entry):
            name, folder = entry
        else:
            raise UserError(f"{_FOLDER_KEY}: {entry!r} is not a [NAME, FOLDER] pair or a 'NAME=FOLDER' string, "
                            "e.g. [[\"mylab\", \"datasets/mylab\"]]")
        name, folder = name.strip(), folder.strip()
        if not _NAME.fullmatch(name):
            raise UserError(f"{_FOLDER_KEY}: dataset name {name!r} must be letters, digits, '_', '.' or '-'")
        if not folder:
            raise UserError(f"{_FOLDER_KEY}: no folder given for {name!r}")
        folder = str(Path(folder).expanduser().absolute())
        if out.setdefault(name, folder) != folder:
            raise UserError(f"{_FOLDER_KEY}: {name!r} is given twice, with {out[name]} and {folder}")
    return out


def _load_folder(name: str, root: str, split: str) -> list:
    folder = Path(root)
    json_file = folder / "annotations" / f"{split}.json"
    if not json_file.is_file():
        prepare = f"python datasets/prepare_folder.py --src YOUR_IMAGES --out {folder}"
        if not folder.exists():
            problem = "does not exist"
        elif split != "all" and (folder / "annotations" / "all.json").is_file():
            problem = f"was prepared without a split (no annotations/{split}.json); prepare a copy with a split"
        else:
            problem = f"holds no prepared dataset (no annotations/{split}.json)"
        raise DatasetNotPreparedError(f"{name}_{split}: {_FOLDER_KEY} gives {name!r} the folder {folder}, which "
                                      f"{problem}. Prepare it with: {prepare}")
    return load_coco_json(str(json_file), str(folder / "images"), f"{name}_{split}")


def register_folders(entries: Iterable[object]) -> Dict[str, str]:
    """(Re-)register ``<name>_{train,val,test,all}`` for each prepared folder of ``entries``
    (``DATASETS.NUCLEI.FOLDERS``); names registered by an earlier call and absent now are removed."""
    folders = parse_folder_entries(entries)
    for name in set(_FOLDERS) - set(folders):
        for split in DSB2018_SPLITS:
            DatasetCatalog.remove(f"{name}_{split}")
            MetadataCatalog.remove(f"{name}_{split}")
        del _FOLDERS[name]
    registered = set(DatasetCatalog.list())
    for name, root in folders.items():
        taken = [f"{name}_{s}" for s in DSB2018_SPLITS if f"{name}_{s}" in registered]
        if taken and name not in _FOLDERS:
            raise UserError(f"{_FOLDER_KEY}: the name {name!r} would replace the registered dataset {taken[0]}; "
                            "choose another name")
        for split in DSB2018_SPLITS:
            meta = Metadata(name=f"{name}_{split}")
            meta.set(json_file=str(Path(root) / "annotations" / f"{split}.json"),
                     image_root=str(Path(root) / "images"), **NUCLEI_METADATA)
            _replace_registration(f"{name}_{split}", functools.partial(_load_folder, name, root, split), meta)
        _FOLDERS[name] = root
    return folders


# ----------------------------------------------------------------------------- synthetic nuclei

_SYNTH: Dict[str, object] = {}  # set by register_synthetic


def cache_dir() -> Path:
    """maskrcnnpp's cache folder: ``$MASKRCNNPP_CACHE`` or ``~/.cache/maskrcnnpp``."""
    return Path(os.environ.get("MASKRCNNPP_CACHE") or Path.home() / ".cache" / "maskrcnnpp").expanduser()


def synthetic_dataset_dir(num_images: int, size: int, seed: int) -> Path:
    """Cache folder of a synthetic set, keyed by count, size, seed and the generator's code."""
    from .synthetic import generator_digest

    return cache_dir() / "synthetic" / f"nuclei-{generator_digest()[:10]}-n{num_images}-size{size}-seed{seed}"


def _synthetic_paths(split: str) -> Tuple[Path, Path]:
    from .synthetic import build_synthetic_dataset

    n = dict(zip(SYNTH_SPLIT_SEEDS, _SYNTH["images"]))[split]
    size, seed = int(_SYNTH["size"]), SYNTH_SPLIT_SEEDS[split]
    out = synthetic_dataset_dir(n, size, seed)
    if not out.is_dir():
        _remove_outdated_synthetic(out)
    json_file = build_synthetic_dataset(out, n, size, seed, split=split)
    return Path(json_file), out / "images"


def _remove_outdated_synthetic(current: Path) -> None:
    # Sets drawn by an earlier version of the generator are never read again.
    version = current.name.split("-")[1]
    for folder in current.parent.glob("nuclei-*-n*"):
        if folder.name.split("-")[1] != version and (folder / "synthetic.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)


def _load_synthetic(split: str) -> list:
    json_file, image_root = _synthetic_paths(split)
    return load_coco_json(str(json_file), str(image_root), f"nuclei_synth_{split}")


def register_synthetic(num_images: Optional[Sequence[int]] = None, size: Optional[int] = None) -> None:
    """(Re-)register ``nuclei_synth_{train,val,test}`` with ``num_images`` images each and ``size`` px
    (None: the defaults of DATASETS.NUCLEI.SYNTH_IMAGES / SYNTH_SIZE)."""
    defaults = get_maskrcnnpp_cfg().DATASETS.NUCLEI
    num_images = tuple(int(n) for n in (defaults.SYNTH_IMAGES if num_images is None else num_images))
    size = defaults.SYNTH_SIZE if size is None else size
    if len(num_images) != 3 or min(num_images) < 0:
        raise ValueError(f"DATASETS.NUCLEI.SYNTH_IMAGES must be three counts >= 0 (train, val, test), got {num_images}")
    if int(size) < 16:
        raise ValueError(f"DATASETS.NUCLEI.SYNTH_SIZE must be at least 16 pixels, got {size}")
    _SYNTH.update(images=num_images, size=int(size))
    for split in SYNTH_SPLIT_SEEDS:
        name = f"nuclei_synth_{split}"
        meta = _ResolvedPathsMetadata(name=name)
        meta.set(paths=functools.partial(_synthetic_paths, split), **NUCLEI_METADATA)
        _replace_registration(name, functools.partial(_load_synthetic, split), meta)


def setup_datasets(cfg) -> None:
    """Re-register the DSB 2018, synthetic and own-folder names from ``cfg.DATASETS.NUCLEI`` (idempotent)."""
    nuclei = cfg.DATASETS.NUCLEI
    register_dsb2018(nuclei.DSB2018_ROOT or None)
    register_synthetic(nuclei.SYNTH_IMAGES, nuclei.SYNTH_SIZE)
    register_folders(nuclei.get("FOLDERS", ()))


register_dsb2018()
register_synthetic()
