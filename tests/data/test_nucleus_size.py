"""maskrcnnpp.data.nucleus_size: equivalent diameters, Detectron2's training resize factor, the nominal diameter."""
from __future__ import annotations

import math

import pytest

from maskrcnnpp.data.nucleus_size import equivalent_diameter, nominal_diameter, training_resize_factor


def test_equivalent_diameter_is_the_discs():
    assert equivalent_diameter(math.pi * 25) == pytest.approx(10.0)
    assert equivalent_diameter([math.pi, 4 * math.pi]).tolist() == pytest.approx([2.0, 4.0])


def test_training_resize_factor_is_detectron2s_resize_shortest_edge():
    from detectron2.data.transforms import ResizeShortestEdge

    for h, w in ((256, 256), (256, 320), (520, 696), (1040, 1388), (360, 1600), (100, 900)):
        new_h, _ = ResizeShortestEdge.get_output_shape(h, w, 320, 640)
        assert training_resize_factor(h, w, (320,), 640) == pytest.approx(new_h / h, rel=0.01), (h, w)
    assert training_resize_factor(256, 256, (288, 320, 352), 1333) == 320 / 256  # the middle of a choice
    assert training_resize_factor(256, 300, (0,), 0) == 1.0  # no resize


def test_nominal_diameter_is_the_median_of_the_images_medians_at_their_training_size():
    def disc(d):
        return math.pi * d * d / 4

    coco = {"images": [{"id": 1, "height": 160, "width": 160},    # x2 to 320: diameters 8, 10, 30 -> median 20
                       {"id": 2, "height": 640, "width": 640},    # x0.5: 40, 44 -> median 21
                       {"id": 3, "height": 320, "width": 1280},   # long side capped: x0.5: 30 -> 15
                       {"id": 4, "height": 320, "width": 320}],   # no nuclei: not counted
            "annotations": [{"image_id": 1, "area": disc(8)}, {"image_id": 1, "area": disc(10)},
                            {"image_id": 1, "area": disc(30)}, {"image_id": 2, "area": disc(40)},
                            {"image_id": 2, "area": disc(44)}, {"image_id": 3, "area": disc(30)},
                            {"image_id": 3, "area": disc(500), "iscrowd": 1}]}
    found = nominal_diameter(coco, (320,), 640)
    assert found["pixels"] == pytest.approx(20.0)  # median of 20, 21, 15
    assert found["all_nuclei_median"] == pytest.approx(20.0)  # 16, 20, 60, 20, 22, 15
    assert (found["images"], found["nuclei"]) == (3, 6)
    # the range: percentiles 10 and 90 of the medians 15, 20, 21 (linear between neighbours)
    assert found["range"] == pytest.approx([16.0, 20.8]) and found["range_percentiles"] == [10.0, 90.0]
    assert nominal_diameter(coco, (320,), 640, (0, 100))["range"] == pytest.approx([15.0, 21.0])
    with pytest.raises(ValueError, match="no image of the dataset has an annotated nucleus"):
        nominal_diameter({"images": coco["images"], "annotations": []}, (320,), 640)
