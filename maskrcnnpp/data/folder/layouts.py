"""Which of the five layouts a folder (or zip) holds, and the plan of its conversion.

* ``labels``: images ``<stem>.<png|tif|jpg|...>`` with instance label images ``<stem>_labels.<tif|png>``
  (0 = background; what ``tools/predict.py`` writes), anywhere below the folder, paired by stem;
* ``masks``: one mask file per nucleus, the DSB layout ``<id>/images/<id>.png`` + ``<id>/masks/*.png``;
* ``coco``: images plus a COCO instances JSON whose ``file_name`` entries name them;
* ``xml``: images with Aperio ImageScope / MoNuSeg XML polygons ``<stem>.xml``, paired by stem as ``labels``;
* ``mat``: images with HoVer-Net style MATLAB files ``<stem>.mat`` (instance map ``inst_map``), paired likewise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..dsb2018.corrections import correction
from ..dsb2018.errors import DatasetError
from ..dsb2018.scan import IMAGE_EXTENSIONS, Plan, is_junk, scan
from ..dsb2018.source import Source
from .coco import CocoFile, Segmentation, is_coco_dataset, parse_coco

__all__ = ["LABEL_EXTENSIONS", "LABEL_SUFFIX", "LAYOUTS", "FolderTask", "detect_layout", "find_coco_json", "plan_folder"]

LAYOUTS = ("labels", "masks", "coco", "xml", "mat")
LABEL_SUFFIX = "_labels"
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")  # lossless: JPEG would change label values at nucleus edges
_EXPECTED = ("images <stem>.png|tif|jpg with label images <stem>_labels.tif|png (layout 'labels'), "
             "<id>/images/<id>.png with one mask per nucleus in <id>/masks/ (layout 'masks'), "
             "images with a COCO instances JSON (layout 'coco'), images with <stem>.xml Aperio/MoNuSeg "
             "polygons (layout 'xml') or with <stem>.mat HoVer-Net instance maps (layout 'mat')")
# The annotation file of an image in the layouts that pair them by stem, and how messages name it.
_PARTNER_SUFFIX = {"xml": ".xml", "mat": ".mat"}
_PARTNER_WHAT = {"labels": ("a", "label image"), "xml": ("an", "XML annotation file"),
                 "mat": ("a", ".mat annotation file")}


@dataclass
class FolderTask:
    """One image to convert with its label image, XML or .mat file (``label_name``), or its COCO annotations."""

    image_id: str
    image_name: str
    label_name: str = ""
    label_format: str = "labels"  # the layout whose file label_name is: "labels", "xml" or "mat"
    segmentations: Tuple[Segmentation, ...] = ()
    coco_size: Optional[Tuple[int, int]] = None  # (height, width) the JSON gives
    coco_display: str = ""

    @property
    def work(self) -> int:
        """How many masks the task decodes, as far as known (orders the tasks, biggest first)."""
        return max(1, len(self.segmentations))


def _files(source: Source) -> Tuple[List[str], List[str]]:
    """(the source's files, the hidden and __MACOSX ones among them that are never read)."""
    names, junk = [], []
    for name in source.names():
        (junk if is_junk(name.split("/")) else names).append(name)
    return names, junk


def _is_label(name: str) -> bool:
    path = Path(name)
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.stem.endswith(LABEL_SUFFIX)


def _is_mask_file(name: str) -> bool:
    parts = name.split("/")
    return len(parts) >= 3 and parts[-2] == "masks"


def find_coco_json(source: Source) -> List[str]:
    """Names of the source's JSON files that are COCO datasets (not results lists or manifests)."""
    import json

    found = []
    for name in _files(source)[0]:
        if name.lower().endswith(".json"):
            try:
                if is_coco_dataset(json.loads(source.read(name))):
                    found.append(name)
            except (ValueError, UnicodeDecodeError):
                continue  # some other JSON: not ours to judge
    return found


def _has_partners(names: List[str], suffix: str) -> bool:
    """Whether some image has a file ``<its stem><suffix>`` anywhere among ``names``."""
    stems = {Path(n).stem for n in names if n.lower().endswith(suffix)}
    return any(Path(n).stem in stems for n in names if n.lower().endswith(IMAGE_EXTENSIONS))


def detect_layout(source: Source) -> str:
    """The one layout the source holds; DatasetError (argument ``layout``) when none or several.

    ``xml`` and ``mat`` are looked for only where none of the other three is found, so that metadata
    files beside their images (microscopes write XML) never change what those layouts detect.
    """
    names = _files(source)[0]
    found = []
    if any(_is_mask_file(n) for n in names):
        found.append("masks")
    if any(_is_label(n) for n in names):
        found.append("labels")
    if find_coco_json(source):
        found.append("coco")
    if not found:
        found = [layout for layout, suffix in _PARTNER_SUFFIX.items() if _has_partners(names, suffix)]
    if not found:
        raise DatasetError(f"{source.path}: no annotations recognised; expected {_EXPECTED}", argument="layout")
    if len(found) > 1:
        raise DatasetError(f"{source.path}: holds files of several layouts ({', '.join(found)}); choose one",
                           argument="layout")
    return found[0]


def _by_stem(source: Source, names: List[str], what: str, strip: str = "") -> Dict[str, str]:
    out: Dict[str, str] = {}
    for name in names:
        stem = Path(name).stem[: len(Path(name).stem) - len(strip)] if strip else Path(name).stem
        if stem in out:
            raise DatasetError(f"{source.display(name)}: two {what} for {stem!r} ({out[stem]} and {name}); "
                               "stems must be unique in the folder")
        out[stem] = name
    return out


def _plan_labels(source: Source) -> Plan:
    names, ignored = _files(source)
    label_names = [n for n in names if _is_label(n)]
    for name in label_names:
        if Path(name).suffix.lower() not in LABEL_EXTENSIONS:
            raise DatasetError(f"{source.display(name)}: label image in a lossy format changes label values; "
                               "save it as PNG or TIFF")
    image_names = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and not _is_label(n)]
    ignored += [n for n in names if not n.lower().endswith(IMAGE_EXTENSIONS)]
    return _plan_paired(source, "labels", image_names, label_names, ignored, f"{LABEL_SUFFIX}.tif or .png")


def _plan_annotation_files(source: Source, layout: str) -> Plan:
    """The plan of layout ``xml`` or ``mat``: each image with its ``<stem>.xml`` or ``<stem>.mat``."""
    names, ignored = _files(source)
    suffix = _PARTNER_SUFFIX[layout]
    annotation_names = [n for n in names if n.lower().endswith(suffix)]
    image_names = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    ignored += [n for n in names if not n.lower().endswith(IMAGE_EXTENSIONS + (suffix,))]
    return _plan_paired(source, layout, image_names, annotation_names, ignored, suffix)


def _plan_paired(source: Source, layout: str, image_names: List[str], label_names: List[str], ignored: List[str],
                 partner: str) -> Plan:
    """One task per image with the label file of its stem (``partner``: how that file is named, for messages)."""
    article, what = _PARTNER_WHAT[layout]
    labels = _by_stem(source, label_names, f"{what}s", strip=LABEL_SUFFIX if layout == "labels" else "")
    images = _by_stem(source, image_names, "images")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DatasetError(f"{source.display(labels[orphans[0]])}: {what} without its image ({orphans[0]}.png, "
                           f".tif, ...); {len(orphans)} such {what}(s)")
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        raise DatasetError(f"{source.display(images[unlabelled[0]])}: image without {article} {what} "
                           f"({unlabelled[0]}{partner}); {len(unlabelled)} such image(s); "
                           "label them or move them out of the folder")
    if not images:
        raise DatasetError(f"{source.path}: no images found; expected {_EXPECTED}")
    tasks = [FolderTask(stem, images[stem], label_name=labels[stem], label_format=layout) for stem in sorted(images)]
    return Plan(tasks, ignored, [])


def _plan_masks(source: Source) -> Plan:
    if not any(_is_mask_file(n) for n in _files(source)[0]):
        raise DatasetError(f"{source.path}: no mask files (<id>/masks/<mask_id>.png) found; expected {_EXPECTED}",
                           argument="layout")
    return scan(source, None)  # the DSB 2018 converter's plan: that layout is its own


def _match_file(source: Source, coco: CocoFile, file_name: str, by_name: Dict[str, List[str]],
                all_names: set) -> str:
    rel = file_name.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    if rel in all_names:
        return rel
    candidates = by_name.get(Path(rel).name, [])
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"{coco.display}: image file {file_name!r} not found in {source.path}")
    raise DatasetError(f"{coco.display}: image file {file_name!r} matches several files ({', '.join(candidates[:3])}); "
                       "give its path relative to the folder")


def _plan_coco(source: Source, coco: CocoFile, json_name: Optional[str]) -> Plan:
    names, ignored = _files(source)
    image_names = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    by_name: Dict[str, List[str]] = {}
    for name in image_names:
        by_name.setdefault(Path(name).name, []).append(name)
    tasks, used, ids = [], set(), {}
    for coco_id, entry in coco.images.items():
        name = _match_file(source, coco, entry["file_name"], by_name, set(names))
        stem = Path(name).stem
        if stem in ids:
            raise DatasetError(f"{coco.display}: images {ids[stem]!r} and {entry['file_name']!r} share the stem "
                               f"{stem!r}; stems must be unique")
        ids[stem] = entry["file_name"]
        size = (entry["height"], entry["width"])
        tasks.append(FolderTask(stem, name, segmentations=tuple(coco.annotations[coco_id]),
                                coco_size=size if None not in size else None, coco_display=coco.display))
        used.add(name)
    if not tasks:
        raise DatasetError(f"{coco.display}: lists no images")
    corrections = [correction("image_not_in_coco", Path(n).stem, source.display(n), f"not in {coco.display}")
                   for n in image_names if n not in used]
    ignored += [n for n in names if n not in used and n not in image_names and n != json_name]
    notes = []
    if len(coco.categories) > 1:
        notes.append(f"{coco.display}: {len(coco.categories)} categories ({', '.join(coco.categories[:5])}) "
                     "all taken as 'nucleus'")
    return Plan(sorted(tasks, key=lambda t: t.image_id), ignored, corrections, notes)


def plan_folder(source: Source, layout: str, coco_json: Optional[Path] = None) -> Plan:
    """The tasks of converting ``source`` in ``layout`` (``coco_json``: the JSON, else the one in the source)."""
    if layout == "labels":
        return _plan_labels(source)
    if layout == "masks":
        return _plan_masks(source)
    if layout in _PARTNER_SUFFIX:
        return _plan_annotation_files(source, layout)
    if layout != "coco":
        raise DatasetError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)} or 'auto'", argument="layout")
    if coco_json is not None:
        if not coco_json.is_file():
            raise DatasetError(f"{coco_json}: COCO JSON not found", argument="coco_json")
        return _plan_coco(source, parse_coco(coco_json.read_bytes(), str(coco_json)), None)
    found = find_coco_json(source)
    if len(found) != 1:
        what = "no COCO instances JSON" if not found else f"{len(found)} COCO JSONs ({', '.join(found[:3])})"
        raise DatasetError(f"{source.path}: {what}; name the one to use", argument="coco_json")
    return _plan_coco(source, parse_coco(source.read(found[0]), source.display(found[0])), found[0])
