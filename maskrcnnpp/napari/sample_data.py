"""A synthetic fluorescence nuclei image as napari sample data (File > Open Sample > Mask RCNN++ nuclei)."""
from __future__ import annotations

from typing import List, Tuple

from ..data.synthetic import generate_nuclei_image

SAMPLE_SEED = 1
SAMPLE_SIZE = 256
# nuclei of the size the shipped model was trained on (DSB 2018 at a short side of 320)
SAMPLE_RADIUS_RANGE = (6.0, 14.0)


def synthetic_nuclei() -> List[Tuple]:
    """The image of :func:`maskrcnnpp.data.synthetic.generate_nuclei_image` (seed 1, 256 x 256, fluorescence,
    radii 6 to 14 px)
    and its exact labels, as napari layer data tuples."""
    image, labels = generate_nuclei_image(SAMPLE_SEED, SAMPLE_SIZE, "fluorescence", radius_range=SAMPLE_RADIUS_RANGE)
    return [(image, {"name": "synthetic cells", "rgb": True}, "image"),
            (labels, {"name": "synthetic cells ground truth", "visible": False}, "labels")]
