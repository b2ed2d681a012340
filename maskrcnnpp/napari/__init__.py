"""The napari plugin (npe2): the "Segment nuclei" widget and a synthetic sample image.

Installed with the ``napari`` extra (``pip install -e .[napari]``) and found by napari through the
``napari.manifest`` entry point, which names ``napari.yaml`` in this folder. Importing
``maskrcnnpp`` never imports this package, so napari and Qt stay optional:

* :mod:`.segmentation` -- what the widget does, without Qt: the model choice, the image of a layer,
  the prediction and its layers' data, saving through :mod:`maskrcnnpp.inference.outputs`;
* :mod:`.widget` -- :class:`~.widget.NucleiSegmentationWidget`, the dock widget (magicgui);
* :mod:`.sample_data` -- a synthetic nuclei image (File > Open Sample).
"""
