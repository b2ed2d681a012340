"""Apply trained nuclei models to new images and write the results (``tools/predict.py``).

* :mod:`.image_io` -- read grey/RGB/RGBA images of 8 or 16 bits, convert to the 8-bit RGB input;
* :mod:`.predictor` -- :class:`NucleiPredictor` (config + weights, TTA, tiled prediction), composing
  :mod:`.weights` (checkpoint loading, config and device lines), :mod:`.passes` (one pass at a scale;
  diameter "auto") and :mod:`.tta` (test-time augmentation);
* :mod:`.tiling` -- tiles with overlap and the merge that counts each nucleus once;
* :mod:`.instances` -- cropped instance masks and the non-overlapping label image;
* :mod:`.writers` -- label PNG/TIFF, COCO results JSON, Kaggle RLE CSV, per-nucleus CSV, ImageJ ROIs;
* :mod:`.outputs` -- the output formats' file names and the writer that dispatches to them.
"""
from . import outputs  # noqa: F401
from .image_io import ImageReadError, intensity_image, read_image, to_uint8_rgb  # noqa: F401
from .instances import CroppedInstance, NucleiPrediction, paint_labels  # noqa: F401
from .predictor import NucleiPredictor  # noqa: F401
from .weights import describe_config, describe_device, load_weights  # noqa: F401
from .tiling import make_tiles, merge_tile_instances, one_by_one, predict_tiled  # noqa: F401
from .writers import (  # noqa: F401
    FORMATS,
    coco_results,
    nuclei_table,
    write_coco_results,
    write_imagej_rois,
    write_kaggle,
    write_label_image,
    write_nuclei_csv,
)
