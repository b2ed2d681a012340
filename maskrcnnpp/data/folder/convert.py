"""One image of a folder: its RGB PNG, and its label image, XML, .mat or COCO annotations as COCO RLE."""
from __future__ import annotations

from typing import List

from ..dsb2018.convert import convert_image, image_record, write_rgb_png
from ..dsb2018.errors import DatasetError
from ..dsb2018.scan import ImageTask
from ..dsb2018.source import Source
from .aperio import xml_labels
from .coco import coco_candidates
from .labels import label_array_candidates, label_candidates
from .layouts import FolderTask
from .matlab import mat_labels

__all__ = ["convert_folder_image"]


def convert_folder_image(task: object, source: Source, images_dir: str, compress_level: int) -> dict:
    """Convert one task of :func:`~.layouts.plan_folder` (the ``masks`` layout's by the DSB converter)."""
    if isinstance(task, ImageTask):
        return convert_image(task, source, images_dir, compress_level)
    assert isinstance(task, FolderTask)
    corrections: List[dict] = []
    height, width, desc = write_rgb_png(task.image_id, task.image_name, source, images_dir, compress_level,
                                        corrections)
    image_display = source.display(task.image_name)
    if task.label_format in ("xml", "mat"):
        # Read into the labels a label image would hold, then converted exactly as one.
        display = source.display(task.label_name)
        data = source.read(task.label_name)
        if task.label_format == "xml":
            labels = xml_labels(data, display, task.image_id, height, width, corrections)
        else:
            labels = mat_labels(data, display, task.image_id, image_display, height, width, corrections)
        del data
        candidates = label_array_candidates(labels, display, task.image_id, corrections)
    elif task.label_name:
        candidates = label_candidates(source.read(task.label_name), task.label_name, source.display(task.label_name),
                                      task.image_id, image_display, height, width, corrections)
    else:
        if task.coco_size is not None and tuple(task.coco_size) != (height, width):
            raise DatasetError(f"{task.coco_display}: image {task.image_name} is {task.coco_size[0]}x{task.coco_size[1]} "
                               f"(height x width) in the JSON but {height}x{width} in {image_display}")
        candidates = coco_candidates(task.segmentations, task.coco_display, task.image_id, height, width, corrections)
    return image_record(task.image_id, height, width, desc, candidates, corrections)
