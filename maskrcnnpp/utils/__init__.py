"""The bottom layer: mechanisms every other layer uses, each implemented once.

* :mod:`.files` -- atomic file and folder writes, JSON read/write;
* :mod:`.images` -- any image array -> 8-bit RGB;
* :mod:`.rle` -- COCO compressed RLE decoding; :mod:`.kaggle_rle` -- the Kaggle run-length CSVs.

Nothing here imports another maskrcnnpp module but :mod:`maskrcnnpp.errors`.
"""
