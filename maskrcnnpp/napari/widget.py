"""The "Segment nuclei" dock widget: pick an image layer and a model, press Segment, get a Labels
layer of the nuclei and a Points layer at their centroids carrying the per-nucleus table; Save writes
the result in the formats of ``tools/predict.py``.

The model is built and applied in a worker thread (napari's ``create_worker``), so napari stays
responsive; the progress bar counts the steps (load the model, segment, add the layers) and the line below
it says what is being done, then what came out (nuclei and seconds) or the error.
"""
from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Tuple

import numpy as np
from magicgui.widgets import (
    CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, ProgressBar, PushButton, Select,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from ..errors import UserError
from ..inference.outputs import DEFAULT_FORMATS, FORMATS
from .segmentation import (
    OWN_MODEL, ModelChoice, Segmentation, build_predictor, config_score_thresh, diameter_choice, layer_image, layer_stem,
    model_names,
    points_layer_data, save_segmentation, segment,
)

logger = logging.getLogger(__name__)

STEPS = ("loading the model", "segmenting", "adding the layers")


class NucleiSegmentationWidget(Container):
    """Segment the nuclei of an image layer with a Mask RCNN++ model (module doc)."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.worker = None  # the running (or last) segmentation worker
        self.results: Dict[str, Segmentation] = {}  # by image layer name: what Save writes
        self._predictor = None
        self._predictor_choice: Optional[ModelChoice] = None

        names = model_names()
        self.image = ComboBox(label="image", choices=self._image_layers, tooltip="the image layer to segment")
        self.model = ComboBox(label="model", choices=names, value=names[0],
                              tooltip="a shipped model (maskrcnnpp.model_zoo), or your own config and weights")
        self.config = FileEdit(label="config", mode="r", filter="*.yaml", enabled=False,
                               tooltip="the config your model was trained with (a .yaml file or a name in configs/)")
        self.weights = FileEdit(label="weights", mode="r", filter="*.pth *.pkl", enabled=False,
                                tooltip="the weights of your training, e.g. OUTPUT_DIR/model_final.pth")
        self.score_thresh = FloatSpinBox(label="score threshold", min=0.0, max=1.0, step=0.05,
                                         tooltip="keep nuclei scoring at least this (starts at the config's "
                                                 "TEST.NUCLEI.SCORE_THRESH)")
        self.diameter = LineEdit(label="diameter", value="",
                                 tooltip="typical nucleus diameter in pixels, 'auto' (estimated) or 'none' (the "
                                         "model's fixed test resize); empty: the model's own (auto for the shipped "
                                         "model; tools/predict.py --diameter)")
        self.tta = CheckBox(text="test-time augmentation (flips)", value=False)
        self.segment_button = PushButton(text="Segment")
        self.progress = ProgressBar(label="progress", min=0, max=len(STEPS), value=0)
        self.status = Label(label="", value="")
        self.folder = FileEdit(label="save to", mode="d", tooltip="the folder the files are written to (created)")
        self.formats = Select(label="formats", choices=list(FORMATS), value=DEFAULT_FORMATS.split(","),
                              tooltip="the formats of tools/predict.py --formats")
        self.save_button = PushButton(text="Save")
        self.extend([self.image, self.model, self.config, self.weights, self.score_thresh, self.diameter, self.tta,
                     self.segment_button, self.progress, self.status, self.folder, self.formats, self.save_button])

        self.max_width = 480  # long layer names (DSB file hashes) would otherwise squeeze the canvas

        self.model.changed.connect(self._on_model_changed)
        self.config.changed.connect(self._on_model_changed)
        self.segment_button.changed.connect(self.start_segmentation)
        self.save_button.changed.connect(self.save)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed,
                      napari_viewer.layers.events.reordered):
            event.connect(self.image.reset_choices)
        self._on_model_changed()

    # ------------------------------------------------------------------ choices
    def _image_layers(self, _widget=None):
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _on_model_changed(self, *_) -> None:
        own = self.model.value == OWN_MODEL
        self.config.enabled = self.weights.enabled = own
        config = self.config.line_edit.value.strip()
        thresh = config_score_thresh(self.model.value, config) if (config or not own) else None
        if thresh is not None:
            self.score_thresh.value = thresh

    def model_choice(self) -> ModelChoice:
        """What the widget's fields choose; a UserError for a diameter that is not pixels or "auto"."""
        return ModelChoice(self.model.value, self.config.line_edit.value.strip(), self.weights.line_edit.value.strip(),
                           bool(self.tta.value), float(self.score_thresh.value), diameter_choice(self.diameter.value))

    # ------------------------------------------------------------------ segment
    def start_segmentation(self, *_) -> None:
        """Segment the chosen image layer in a worker thread (``self.worker``); the layers are added
        when it returns."""
        layer = self.image.value
        if layer is None:
            self._fail("no image layer: open an image (File > Open) or a sample (File > Open Sample)")
            return
        try:
            image = layer_image(layer.name, layer.data, layer.rgb)
            choice = self.model_choice()
        except UserError as e:
            self._fail(str(e))
            return
        stem = layer_stem(layer.name, getattr(layer.source, "path", None))
        self.segment_button.enabled = False
        self.progress.value = 0
        self.status.value = f"{STEPS[0]} ..."
        # an "errored" handler of our own: otherwise napari re-raises the error in the GUI thread
        handlers = {"yielded": self._on_step, "returned": lambda result: self._show(layer, *result),
                    "errored": self._on_error, "finished": self._on_finished}
        self.worker = create_worker(self._segment_in_thread, choice, image, stem, _start_thread=False,
                                    _connect=handlers)
        self.worker.start()

    def _segment_in_thread(self, choice: ModelChoice, image: np.ndarray, stem: str):
        # a generator: napari's worker sends each yield to _on_step (GUI thread), the return to _show
        if choice != self._predictor_choice:
            self._predictor, self._predictor_choice = None, None
            self._predictor = build_predictor(choice)
            self._predictor_choice = choice
        yield 1
        start = time.perf_counter()
        segmentation = segment(self._predictor, image, stem, choice.describe())
        yield 2
        return segmentation, time.perf_counter() - start

    def _on_step(self, step: int) -> None:
        self.progress.value = step
        self.status.value = f"{STEPS[step]} ..." if step < len(STEPS) else ""

    def _show(self, layer, segmentation: Segmentation, seconds: float) -> None:
        labels_name, points_name = f"{layer.name} nuclei", f"{layer.name} nucleus centroids"
        placement = {"scale": tuple(layer.scale)[-2:], "translate": tuple(layer.translate)[-2:]}
        for name in (labels_name, points_name):  # a new Segment replaces the layers of the last one
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.viewer.add_labels(segmentation.labels, name=labels_name, **placement)
        coords, features = points_layer_data(segmentation)
        colours = {"face_color": "score", "face_colormap": "viridis", "face_contrast_limits": (0.0, 1.0)}
        median_area = float(np.median(features["area"])) if segmentation.count else 0.0
        self.viewer.add_points(coords, features=features, name=points_name, size=max(3.0, 0.35 * median_area ** 0.5),
                               border_width=0, **(colours if segmentation.count else {}), **placement)
        self.results[layer.name] = segmentation
        self.progress.value = len(STEPS)
        self.status.value = f"{segmentation.count} nuclei in {seconds:.2f} s"
        show_info(f"{layer.name}: {segmentation.count} nuclei ({segmentation.model}) in {seconds:.2f} s")

    def _on_error(self, error: Exception) -> None:
        if isinstance(error, UserError):
            self._fail(str(error))
        else:
            logger.error("segmentation failed", exc_info=error)
            self._fail(f"{type(error).__name__}: {error}")

    def _on_finished(self) -> None:
        self.segment_button.enabled = True

    def _fail(self, message: str) -> None:
        self.progress.value = 0
        self.status.value = f"error: {message}"
        show_error(message)

    # ------------------------------------------------------------------ save
    def save(self, *_) -> Tuple[str, ...]:
        """Write the last segmentation of the chosen image layer into the chosen folder and formats
        (:func:`~.segmentation.save_segmentation`); return the paths written (none after an error)."""
        layer = self.image.value
        segmentation = self.results.get(layer.name) if layer is not None else None
        if segmentation is None:
            self._fail(f"nothing to save for {layer.name if layer is not None else 'no image'}: press Segment first")
            return ()
        labels_name = f"{layer.name} nuclei"
        labels = self.viewer.layers[labels_name].data if labels_name in self.viewer.layers else None
        try:
            paths = save_segmentation(segmentation, self.folder.line_edit.value.strip(), list(self.formats.value),
                                      labels)
        except UserError as e:
            self._fail(str(e))
            return ()
        self.status.value = f"wrote {len(paths)} file(s) to {self.folder.line_edit.value.strip()}"
        show_info(self.status.value)
        return tuple(paths)
