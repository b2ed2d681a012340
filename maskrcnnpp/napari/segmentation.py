"""What the napari widget does, without Qt: choose the model, take the image of a layer, segment it,
turn the result into layer data, save it in the formats ``tools/predict.py`` writes.

The prediction is :class:`~maskrcnnpp.inference.NucleiPredictor` and the files are written by
:class:`~maskrcnnpp.inference.outputs.PredictionWriter`, so the widget's outputs are byte for byte
those of ``tools/predict.py`` for the same pixels, model and threshold.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import setup_cfg
from ..errors import UserError
from ..evaluation.coco_results import file_stem
from ..inference.instances import NucleiPrediction
from ..inference.image_io import intensity_image
from ..inference.outputs import PredictionWriter, output_names, parse_formats
from ..inference.predictor import CONFIG_DIAMETER, NucleiPredictor
from ..inference.scale import AUTO, Diameter, parse_diameter
from ..inference.writers import nuclei_table
from ..model_zoo import get as get_zoo_model
from ..model_zoo import list_models

__all__ = ["OWN_MODEL", "ModelChoice", "Segmentation", "build_predictor", "config_score_thresh", "diameter_choice", "layer_image", "layer_stem",
           "model_names", "points_layer_data", "save_segmentation", "segment"]

OWN_MODEL = "own config + weights"


def model_names() -> List[str]:
    """The shipped models (the default first), then the choice of one's own config and weights."""
    return [m.name for m in list_models()] + [OWN_MODEL]


@dataclass(frozen=True)
class ModelChoice:
    """A shipped model by ``name``, or (``name == OWN_MODEL``) a ``config`` (path or name in configs/)
    with its ``weights`` file; ``tta``, ``score_thresh`` and ``diameter`` (the model's own
    ``CONFIG_DIAMETER``, None, pixels or "auto") as :class:`NucleiPredictor` takes them."""

    name: str
    config: str = ""
    weights: str = ""
    tta: bool = False
    score_thresh: Optional[float] = None
    diameter: Union[Diameter, object] = CONFIG_DIAMETER

    def describe(self) -> str:
        model = f"{self.config} with {self.weights}" if self.name == OWN_MODEL else f"shipped model {self.name}"
        scale = (", the model's diameter" if self.diameter is CONFIG_DIAMETER else ", diameter none" if self.diameter is None
                 else f", diameter {self.diameter}{'' if self.diameter == AUTO else ' px'}")
        return f"{model}{', TTA' if self.tta else ''}, score threshold {self.score_thresh}{scale}"


def diameter_choice(text: str) -> Union[Diameter, object]:
    """The diameter of the widget's text field: empty for the model's own (its TEST.NUCLEI.DIAMETER),
    else pixels, "auto" or "none" (the model's test resize); a UserError saying what is allowed."""
    return parse_diameter(text) if text.strip() else CONFIG_DIAMETER


def config_score_thresh(name: str, config: str = "") -> Optional[float]:
    """``TEST.NUCLEI.SCORE_THRESH`` of the config of shipped model ``name`` (or of ``config`` for one's
    own model): the threshold the widget starts from; None while the config cannot be read."""
    try:
        cfg = setup_cfg(get_zoo_model(name).config if name != OWN_MODEL else config, device="cpu")
    except UserError:
        return None
    return float(cfg.TEST.NUCLEI.SCORE_THRESH)


def build_predictor(choice: ModelChoice, device: Optional[str] = None) -> NucleiPredictor:
    """The predictor of ``choice`` on ``device`` (default: cuda when present, else cpu); a UserError
    when the config or weights are missing or do not fit each other."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs = {"tta": choice.tta, "score_thresh": choice.score_thresh, "diameter": choice.diameter}
    if choice.name != OWN_MODEL:
        return NucleiPredictor.from_zoo(choice.name, device=device, **kwargs)
    if not choice.config.strip():
        raise UserError("choose the config your model was trained with (a .yaml file or a name in configs/)")
    if not choice.weights.strip():
        raise UserError(f"choose the weights file trained with {choice.config} (e.g. model_final.pth)")
    return NucleiPredictor.from_config(choice.config, choice.weights, device=device, **kwargs)


def layer_image(name: str, data, rgb: bool) -> np.ndarray:
    """The pixels of image layer ``name`` as one 2D plane, grey ``[H, W]`` or colour ``[H, W, 3|4]``.

    ``data`` is the layer's data (a list of levels for a multiscale layer: the full-resolution one is
    used). Stacks (time, z, channels as an axis) are refused with a UserError naming the layer.
    """
    if isinstance(data, (list, tuple)):  # multiscale: level 0 is the full resolution
        data = data[0]
    image = np.asarray(data)
    spatial = image.ndim - (1 if rgb else 0)
    if spatial != 2:
        raise UserError(f"layer {name!r} is {image.shape} ({'colour, ' if rgb else ''}{spatial} dimensions); "
                        "the widget segments one 2D grey or RGB image: pick a single plane")
    return image


def layer_stem(name: str, source_path: Optional[str] = None) -> str:
    """The ``<stem>`` of output files for a layer: its file's stem (as ``tools/predict.py`` names them)
    when the layer was opened from a file, else its name with path separators and odd characters
    replaced by ``_``."""
    if source_path:
        return file_stem(source_path)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "image"


@dataclass
class Segmentation:
    """The nuclei of one image layer: the ``prediction`` (labels 1..K, scores), the per-nucleus
    ``table`` (:func:`maskrcnnpp.inference.writers.nuclei_table`), the ``image`` it was made from and
    the ``stem`` its files are named by; ``model`` says which model made it."""

    stem: str
    image: np.ndarray
    prediction: NucleiPrediction
    table: Dict[str, np.ndarray]
    model: str

    @property
    def labels(self) -> np.ndarray:
        return self.prediction.labels

    @property
    def count(self) -> int:
        return self.prediction.num_instances


def segment(predictor: NucleiPredictor, image: np.ndarray, stem: str, model: str = "",
            tile_size: int = 2048, tile_overlap: int = 128) -> Segmentation:
    """Segment ``image`` (tiled above ``tile_size`` pixels, as :meth:`NucleiPredictor.__call__`)."""
    prediction = predictor.predict(image, tile_size=tile_size, tile_overlap=tile_overlap)
    table = nuclei_table(prediction, intensity_image(image))
    return Segmentation(stem, image, prediction, table, model)


def points_layer_data(segmentation: Segmentation) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Centroids ``[K, 2]`` (row, column) of the nuclei, in label order, and the table as the points'
    features (every column of the nuclei CSV)."""
    table = segmentation.table
    coords = np.stack([table["centroid_y"], table["centroid_x"]], axis=1).reshape(-1, 2)
    return coords, dict(table)


def save_segmentation(segmentation: Segmentation, folder: str, formats: Sequence[str],
                      labels: Optional[np.ndarray] = None) -> List[str]:
    """Write ``segmentation`` into ``folder`` (created) in ``formats`` with the file names of
    ``tools/predict.py``; return the paths written. The COCO and Kaggle files hold this one image.

    ``labels`` is the labels layer's data now: when it differs from the prediction (edited in napari)
    the save is refused with a UserError, since the scores, table and COCO entries describe the
    predicted nuclei, not edited ones.
    """
    formats = parse_formats(",".join(formats))
    if labels is not None and not np.array_equal(np.asarray(labels), segmentation.labels):
        raise UserError(f"the labels of {segmentation.stem!r} were edited after Segment: the scores and table "
                        "describe the predicted nuclei, so they are not saved; run Segment again, or save the "
                        "edited layer with File > Save Selected Layers")
    if not folder:
        raise UserError("choose the folder to save the results in")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {folder}: {e.strerror or e}") from None
    if not os.path.isdir(folder):
        raise UserError(f"{folder} is not a folder")
    writer = PredictionWriter(folder, formats)
    try:
        writer.add(segmentation.stem, segmentation.prediction, segmentation.image)
        writer.close()
    except OSError as e:
        raise UserError(f"cannot write the results into {folder}: {e.strerror or e}") from None
    return [os.path.join(folder, name) for name in output_names([segmentation.stem], formats)]
