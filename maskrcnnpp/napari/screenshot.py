"""A picture of the plugin at work: napari with the "Segment nuclei" widget docked, after Segment
on an image, saved as PNG (``tools/napari_screenshot.py``; the README's picture).

Needs OpenGL for the canvas: a display, or Xvfb with Qt's offscreen platform
(``QT_QPA_PLATFORM=offscreen xvfb-run -a python tools/napari_screenshot.py ...``); without an OpenGL
context :func:`check_opengl` stops with one clear error before any window opens.
"""
from __future__ import annotations

import time
from typing import Dict, Optional

import numpy as np

from ..errors import UserError

WINDOW_SIZE = (1440, 760)


def wait_for_segmentation(widget, timeout: float = 600.0) -> None:
    """Run Qt's event loop until the widget's Segment has finished (or ``timeout`` seconds)."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not widget.segment_button.enabled:
        if time.monotonic() > deadline:
            raise UserError(f"Segment did not finish within {timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()


def check_opengl() -> None:
    """A UserError unless Qt gives vispy an OpenGL context (napari's canvas needs one)."""
    from vispy.app import Canvas
    from vispy.gloo import gl

    canvas = Canvas(show=False)
    try:
        canvas.set_current()
        gl.glGetParameter(gl.GL_EXTENSIONS)
    except AttributeError:  # glGetString gave None
        raise UserError("no OpenGL context for napari's canvas: run under a display, or "
                        "QT_QPA_PLATFORM=offscreen xvfb-run -a (Xvfb now and then starts without GLX: run again)") from None
    finally:
        canvas.close()


def segmentation_screenshot(image: np.ndarray, name: str, out: str, truth: Optional[np.ndarray] = None,
                            window_size=WINDOW_SIZE) -> Dict[str, object]:
    """Open ``image`` as layer ``name`` in a napari window with the widget docked, press Segment with the
    default model, write the window (canvas, layer list, widget) to PNG ``out``. Returns the nucleus
    count, the widget's status line and, with ``truth`` (a label image), its nucleus count."""
    import napari
    from PIL import Image

    from .widget import NucleiSegmentationWidget

    check_opengl()
    viewer = napari.Viewer(show=False, title="maskrcnnpp: Segment nuclei")
    try:
        viewer.window.resize(*window_size)
        viewer.add_image(image, name=name, rgb=image.ndim == 3)
        widget = NucleiSegmentationWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Segment nuclei", area="right")
        widget.start_segmentation()
        wait_for_segmentation(widget)
        if not widget.status.value.endswith(" s"):
            raise UserError(f"Segment failed: {widget.status.value}")
        viewer.layers[f"{name} nuclei"].contour = 1  # outlines: the nuclei stay visible under them
        viewer.layers.selection.active = viewer.layers[f"{name} nucleus centroids"]
        viewer.reset_view()
        # the window (canvas, layer list, widget); Qt grabs the canvas from its framebuffer
        # (canvas_only=True renders through vispy, which comes out black under Xvfb + offscreen)
        shot = viewer.screenshot(canvas_only=False)
        Image.fromarray(shot[..., :3]).save(out, optimize=True)
        count = int(viewer.layers[f"{name} nuclei"].data.max())
        result = {"nuclei": count, "status": widget.status.value, "size": tuple(shot.shape[:2])}
        if truth is not None:
            result["truth"] = int(np.max(truth))
        return result
    finally:
        viewer.close()
