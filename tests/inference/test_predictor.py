"""maskrcnnpp.inference: image conversion, label painting, tiled prediction and its merge, TTA."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from maskrcnnpp.evaluation import remove_overlaps
from maskrcnnpp.inference import NucleiPredictor, paint_labels, predict_tiled, read_image, to_uint8_rgb
from maskrcnnpp.inference.tiling import one_by_one
from maskrcnnpp.inference.image_io import ImageReadError
from maskrcnnpp.inference.instances import crops_from_masks
from maskrcnnpp.inference.tiling import core_limits, make_tiles, tile_starts

from tool_helpers import FAST_OPTS, disk_labels, nuclei_image, partition, save_tiny_weights


# ---------------------------------------------------------------------------- image reading
# (the conversion to 8-bit RGB is tested in tests/utils/test_images.py)
def test_read_image_keeps_bit_depth_and_channels(tmp_path, caplog):
    import tifffile
    from PIL import Image

    g16 = (np.arange(30 * 20).reshape(30, 20) * 97).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "g16.tif", g16)
    rgba = np.random.default_rng(0).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    rgb16 = (np.random.default_rng(1).integers(0, 65536, (7, 5, 3))).astype(np.uint16)
    import cv2

    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[:, :, ::-1])
    read = read_image(str(tmp_path / "rgb16.png"))
    assert read.dtype == np.uint16 and np.array_equal(read, rgb16)  # 16-bit colour kept, RGB order
    # three planes of unknown meaning (axes QYX): read as planar colour, with a warning
    tifffile.imwrite(tmp_path / "chw.tif", np.moveaxis(rgb16, 2, 0), photometric="minisblack")
    assert np.array_equal(read_image(str(tmp_path / "chw.tif")), rgb16)
    assert "chw.tif: 3 planes of unknown meaning (TIFF axes QYX) read as RGB colour channels" in caplog.text
    tifffile.imwrite(tmp_path / "ij.tif", np.moveaxis(rgb16, 2, 0), imagej=True, metadata={"axes": "CYX"})  # ImageJ colour
    assert np.array_equal(read_image(str(tmp_path / "ij.tif")), rgb16)
    tifffile.imwrite(tmp_path / "sep.tif", np.moveaxis(rgb16, 2, 0), photometric="rgb", planarconfig="separate")  # SYX
    assert np.array_equal(read_image(str(tmp_path / "sep.tif")), rgb16)
    tifffile.imwrite(tmp_path / "z.tif", np.moveaxis(rgb16, 2, 0), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError, match=r"z.tif: a stack of 3 planes \(TIFF axes ZYX\)"):
        read_image(str(tmp_path / "z.tif"))  # a 3-slice z-stack is not an RGB image
    for name in ("g16.png", "g16.tif"):
        read = read_image(str(tmp_path / name))
        assert read.dtype == np.uint16 and np.array_equal(read, g16), name
    assert np.array_equal(read_image(str(tmp_path / "rgba.png")), rgba)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(str(tmp_path / "broken.png"))
    with pytest.raises(ImageReadError, match="missing.png does not exist"):
        read_image(str(tmp_path / "missing.png"))


def _png_16bit_grey_alpha(path, grey_alpha: np.ndarray) -> None:
    """Write a 16-bit grey+alpha PNG (PNG colour type 4) by hand: Pillow cannot write one."""
    import struct
    import zlib

    h, w, _ = grey_alpha.shape
    big_endian = grey_alpha.astype(">u2")
    raw = b"".join(b"\x00" + big_endian[y].tobytes() for y in range(h))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_grey_alpha_png_reads_as_grey_and_says_so(tmp_path):
    from PIL import Image

    from maskrcnnpp.inference.image_io import image_kind, png_colour_type

    rng = np.random.default_rng(4)
    la8 = rng.integers(0, 256, (6, 7, 2), dtype=np.uint8)
    Image.fromarray(la8, "LA").save(tmp_path / "la8.png")
    la16 = rng.integers(0, 65536, (5, 4, 2)).astype(np.uint16)
    _png_16bit_grey_alpha(tmp_path / "la16.png", la16)
    for name, la in (("la8.png", la8), ("la16.png", la16)):
        path = str(tmp_path / name)
        image = read_image(path)
        assert image.dtype == la.dtype and np.array_equal(image, la[:, :, 0]), name  # alpha dropped, grey kept
        assert png_colour_type(path) == 4 and image_kind(path, image) == "grey+alpha", name
        assert np.array_equal(to_uint8_rgb(image, "percentile"), to_uint8_rgb(la[:, :, 0], "percentile")), name
    rgba = rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[:, :, 0]).save(tmp_path / "grey.png")
    assert image_kind(str(tmp_path / "rgba.png"), read_image(str(tmp_path / "rgba.png"))) == "RGBA"
    assert image_kind(str(tmp_path / "grey.png"), read_image(str(tmp_path / "grey.png"))) == "grey"
    assert image_kind(str(tmp_path / "x.tif"), np.zeros((2, 2, 3), np.uint16)) == "RGB"


# ---------------------------------------------------------------------------- label painting
def test_paint_labels_matches_remove_overlaps_and_keeps_scores():
    rng = np.random.default_rng(3)
    masks = np.stack([disk_labels((48, 48), [(rng.integers(8, 40), rng.integers(8, 40), rng.integers(3, 9))]) > 0
                      for _ in range(12)])
    masks[5] = masks[2]  # an exact duplicate with a lower score is emptied
    scores = rng.random(12)
    scores[5] = scores[2] - 0.01
    pred = paint_labels(crops_from_masks(masks, scores), (48, 48))
    assert np.array_equal(pred.labels, remove_overlaps(masks, scores))
    assert pred.num_instances == pred.labels.max() == 11
    # label k carries the k-th highest score among the kept instances
    kept = np.sort(np.delete(scores, 5))[::-1]
    assert np.allclose(pred.scores, kept)
    assert pred.info["emptied_by_overlap"] == 1


# ---------------------------------------------------------------------------- tiling
def test_tile_grid_and_cores_partition_the_image():
    assert tile_starts(300, 128, 32) == [0, 96, 172]
    assert tile_starts(100, 128, 32) == [0]
    assert tile_starts(128, 128, 0) == [0]
    # cuts in the middle of each overlap: (96 + 128) // 2, (172 + 224) // 2
    assert core_limits([0, 96, 172], 128, 300) == [(0, 112), (112, 198), (198, 300)]
    tiles = make_tiles((150, 300), 128, 32)
    cover = np.zeros((150, 300), np.int32)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        assert t.h == 128 and t.w == 128
    assert (cover == 1).all()
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(300, 128, 128)


def scattered_disks(shape, count, radius, seed):
    """Non-overlapping disks (1 px apart at least) at random places, radius 4..``radius``."""
    rng = np.random.default_rng(seed)
    disks = []
    while len(disks) < count:
        r = int(rng.integers(4, radius + 1))
        y, x = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
        if all((y - yy) ** 2 + (x - xx) ** 2 > (r + rr + 2) ** 2 for yy, xx, rr in disks):
            disks.append((y, x, r))
    return disk_labels(shape, disks)


def encode(labels):
    return np.stack([labels % 256, labels // 256, np.zeros_like(labels)], axis=-1).astype(np.uint8)


def fake_tile_predictor(cut_scores_higher=False):
    """A translation-equivariant 'model': every label in the tile is one instance (cut where the tile cuts it)."""
    calls = []

    def predict(tile):
        calls.append(tile.shape)
        labels = tile[:, :, 0].astype(np.int64) + 256 * tile[:, :, 1].astype(np.int64)
        out = []
        for i in np.unique(labels):
            if i == 0:
                continue
            mask = labels == i
            touches = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
            score = (0.99 if touches else 0.6) if cut_scores_higher else 0.5 + (i % 7) / 20
            out.extend(crops_from_masks(mask[None], [score]))
        return out

    predict.calls = calls
    return predict


@pytest.mark.parametrize("cut_scores_higher", [False, True])
def test_tiled_prediction_equals_untiled_and_counts_each_nucleus_once(cut_scores_higher):
    labels = scattered_disks((150, 170), 45, 9, seed=0)  # diameters up to 19 px
    image = encode(labels)
    predictor = fake_tile_predictor(cut_scores_higher)
    untiled = paint_labels(predictor(image), labels.shape)
    assert partition(untiled.labels) == partition(labels)
    instances, stats = predict_tiled(image, one_by_one(predictor), tile_size=64, overlap=24)
    tiled = paint_labels(instances, labels.shape)
    # rows start at 0, 40, 80, 86 and columns at 0, 40, 80, 106: 4 x 4 tiles
    assert stats["tiles"] == 16 and len(predictor.calls) == 1 + 16
    assert all(shape[:2] == (64, 64) for shape in predictor.calls[1:])
    assert stats["duplicates"] > 0  # nuclei in overlap strips were seen twice, merged
    assert stats["cut_at_tile_border"] == 0
    # same nuclei, same pixels: nothing counted twice, nothing lost, none left cut
    assert tiled.num_instances == len(instances) == labels.max()
    assert partition(tiled.labels) == partition(untiled.labels)


def test_nuclei_crossing_every_tile_border_are_whole():
    # nuclei centred exactly on the tile borders and overlap-strip middles of a 2x2 grid
    disks = [(y, x, 7) for y in (30, 56, 64, 72) for x in (20, 56, 64, 72, 100)]
    disks = [d for k, d in enumerate(disks) if k % 2 == 0]  # keep them apart
    labels = disk_labels((120, 120), disks)
    instances, stats = predict_tiled(encode(labels), one_by_one(fake_tile_predictor()), tile_size=72, overlap=24)
    assert partition(paint_labels(instances, labels.shape).labels) == partition(labels)
    assert stats["cut_at_tile_border"] == 0


def test_too_small_overlap_is_counted_and_logged(caplog):
    labels = scattered_disks((150, 170), 45, 9, seed=0)
    with caplog.at_level(logging.WARNING, logger="maskrcnnpp.inference.tiling"):
        _, stats = predict_tiled(encode(labels), one_by_one(fake_tile_predictor()), tile_size=64, overlap=4)
    assert stats["cut_at_tile_border"] > 0
    assert "tile overlap of at least the largest nucleus diameter" in caplog.text


# ---------------------------------------------------------------------------- real tiny model
@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory):
    from maskrcnnpp.config import setup_cfg

    weights = save_tiny_weights(tmp_path_factory.mktemp("weights"))
    cfg = setup_cfg("maskrcnnpp_tiny", FAST_OPTS + ["INPUT.MIN_SIZE_TEST", "0"], device="cpu")
    return NucleiPredictor(cfg, weights, score_thresh=0.3, rescale="none")


@pytest.fixture(scope="module")
def grey_image():
    labels = disk_labels((112, 128), [(30, 30, 9), (30, 60, 8), (80, 90, 10), (70, 30, 7), (95, 60, 6)])
    return nuclei_image(labels)


def test_every_kind_of_input_gives_the_same_prediction(tiny_predictor, grey_image):
    g = grey_image
    reference = tiny_predictor.predict(g)
    assert reference.labels.shape == g.shape and reference.labels.dtype == np.int32
    assert reference.num_instances > 0, "the random-init model should predict something at score 0.3"
    assert reference.num_instances == reference.labels.max() == len(reference.scores)
    assert (reference.scores >= 0.3).all() and (np.diff(reference.scores) <= 0).all()
    rgb = np.repeat(g[:, :, None], 3, axis=2)
    variants = {
        "grey8 [H,W,1]": g[:, :, None],
        "rgb8": rgb,
        "rgba8": np.concatenate([rgb, np.full_like(g[:, :, None], 200)], axis=2),
        "grey16": g.astype(np.uint16) * 257,
        "rgba16": np.concatenate([rgb, np.full_like(g[:, :, None], 9)], axis=2).astype(np.uint16) * 257,
    }
    for name, image in variants.items():
        pred = tiny_predictor.predict(image)
        assert np.array_equal(pred.labels, reference.labels), name
        assert np.allclose(pred.scores, reference.scores), name


def test_tiled_real_model_single_tile_equals_untiled_and_tiles_stay_in_frame(tiny_predictor, grey_image):
    untiled = tiny_predictor.predict(grey_image)
    one_tile = tiny_predictor.predict(grey_image, tile_size=128, tile_overlap=32)
    assert np.array_equal(one_tile.labels, untiled.labels) and one_tile.info["tiles"] == 1
    tiled = tiny_predictor.predict(grey_image, tile_size=80, tile_overlap=32)
    assert tiled.info["tiles"] == 4 and tiled.labels.shape == grey_image.shape
    assert tiled.num_instances == len(np.unique(tiled.labels)) - 1 == len(tiled.scores)


@pytest.mark.parametrize("mask_thresh", ["0.5", "0.3"])
def test_masks_pasted_box_by_box_equal_detectron2s_full_paste(tmp_path, grey_image, monkeypatch, mask_thresh):
    """Large untiled images: no N x H x W mask array, and exactly the masks Detectron2 would paste."""
    import detectron2.layers

    from maskrcnnpp.config import setup_cfg
    from maskrcnnpp.inference.instances import crops_from_instances, paint_labels

    # the configured test resize (x2.86 here), so boxes and masks are scaled back as in real use
    cfg = setup_cfg("maskrcnnpp_tiny", FAST_OPTS + ["TEST.NUCLEI.MASK_THRESH", mask_thresh], device="cpu")
    # built from this cfg: the model pastes its own masks at TEST.NUCLEI.MASK_THRESH
    predictor = NucleiPredictor(cfg, save_tiny_weights(tmp_path), score_thresh=0.3, rescale="none")
    rgb = np.repeat(grey_image[:, :, None], 3, axis=2)
    model_image = rgb[:, :, ::-1] if predictor.input_format == "BGR" else rgb
    with torch.no_grad():
        full = predictor.model([predictor._model_input(model_image, predictor.test_scale(*rgb.shape[:2]))])[0]["instances"]
    reference = paint_labels(crops_from_instances(full, 0.3, float(mask_thresh)), rgb.shape[:2])
    assert reference.num_instances > 0

    def no_full_paste(*args, **kwargs):
        raise AssertionError("N full-image masks were pasted")

    monkeypatch.setattr(detectron2.layers, "paste_masks_in_image", no_full_paste)
    pred = predictor.predict(grey_image)
    assert np.array_equal(pred.labels, reference.labels)
    assert np.array_equal(pred.scores, reference.scores)


def test_rcnn_tta_uses_detectron2_wrapper_at_the_test_scale(tiny_predictor, grey_image):
    tta = NucleiPredictor(tiny_predictor.cfg, model=tiny_predictor.model, tta=True, score_thresh=0.3, rescale="none")
    pred = tta.predict(grey_image)
    from detectron2.modeling import GeneralizedRCNNWithTTA

    assert isinstance(tta._rcnn_tta, GeneralizedRCNNWithTTA)
    assert tta._rcnn_tta.tta_mapper.min_sizes == [112] and tta._rcnn_tta.tta_mapper.flip
    assert pred.labels.shape == grey_image.shape and pred.num_instances == len(pred.scores)


class _GradientSemanticModel(torch.nn.Module):
    """Stands in for SemanticUNet: foreground probability = (channel 0 / 255) * a fixed asymmetric ramp."""

    postprocess = {"threshold": 0.5, "min_size": 1, "watershed": False, "watershed_h": 2.0, "boundary_threshold": 0.5}

    def __init__(self, shape):
        super().__init__()
        h, w = shape
        self.ramp = torch.linspace(0, 1, h)[:, None] * 0.3 + torch.linspace(0, 1, w)[None, :] * 0.7
        self.seen = []

    def forward(self, inputs):
        out = []
        for x in inputs:
            self.seen.append(x["image"].clone())
            out.append({"sem_seg": (x["image"][0] / 255.0 * self.ramp)[None]})
        return out


def test_semantic_tta_averages_the_four_flips(monkeypatch, grey_image):
    from maskrcnnpp.utils import postprocess
    from maskrcnnpp.config import setup_cfg

    cfg = setup_cfg("unet_tiny", ["INPUT.MIN_SIZE_TEST", "0"], device="cpu")
    model = _GradientSemanticModel(grey_image.shape)
    captured = {}
    real = postprocess.probability_to_instances

    def spy(prob, *args, **kwargs):
        captured["prob"] = prob
        return real(prob, *args, **kwargs)

    monkeypatch.setattr(postprocess, "probability_to_instances", spy)
    pred = NucleiPredictor(cfg, model=model, tta=True, score_thresh=0.0).predict(grey_image)
    assert len(model.seen) == 4
    img = torch.as_tensor(grey_image, dtype=torch.float32)
    assert torch.equal(model.seen[1][0], torch.flip(img, [1])) and torch.equal(model.seen[2][0], torch.flip(img, [0]))
    ramp = model.ramp.numpy()
    mean_ramp = (ramp + ramp[:, ::-1] + ramp[::-1] + ramp[::-1, ::-1]) / 4
    assert np.allclose(captured["prob"], grey_image / 255.0 * mean_ramp, atol=1e-6)
    assert pred.num_instances == pred.labels.max()


def test_real_semantic_model_runs_at_native_size_and_tta_averages_its_flipped_outputs(monkeypatch, grey_image):
    import maskrcnnpp.modeling.semantic  # noqa: F401  (registers SemanticUNet)
    from detectron2.modeling import build_model

    from maskrcnnpp.utils import postprocess
    from maskrcnnpp.config import setup_cfg

    cfg = setup_cfg("unetpp_tiny", [], device="cpu")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    seen, captured = [], {}
    real_forward, real_p2i = model.forward, postprocess.probability_to_instances
    monkeypatch.setattr(model, "forward", lambda inputs: seen.append(inputs[0]) or real_forward(inputs))

    def spy(prob, *args, **kwargs):  # the TTA path post-processes the averaged probability through here
        captured["prob"] = prob
        return real_p2i(prob, *args, **kwargs)

    monkeypatch.setattr(postprocess, "probability_to_instances", spy)
    image = grey_image[:64, :80]
    plain = NucleiPredictor(cfg, model=model, score_thresh=0.0).predict(image)
    assert tuple(seen[0]["image"].shape) == (3, 64, 80)  # semantic models are not resized (no MIN_SIZE_TEST)
    assert plain.labels.shape == (64, 80) and plain.num_instances == plain.labels.max()
    seen.clear()
    tta = NucleiPredictor(cfg, model=model, tta=True, score_thresh=0.0).predict(image)
    assert len(seen) == 4 and tta.labels.shape == (64, 80)
    with torch.no_grad():
        probs = [model.inference([x])[0]["sem_seg"][0].numpy() for x in seen]
    expected = (probs[0] + probs[1][:, ::-1] + probs[2][::-1] + probs[3][::-1, ::-1]) / 4
    assert np.allclose(captured["prob"], expected, atol=1e-6)


# ---------------------------------------------------------------------------- weights that do not fit the config
@pytest.fixture(scope="module")
def rcnnpp_weights(tmp_path_factory):
    return save_tiny_weights(tmp_path_factory.mktemp("rcnnpp_weights"))


def _tiny_cfg(name, opts=()):
    from maskrcnnpp.config import setup_cfg

    return setup_cfg(name, list(opts), device="cpu")


def _checkpoint_state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.mark.parametrize("config", ["maskrcnn_tiny", "unet_tiny"])
def test_weights_of_another_architecture_are_refused(rcnnpp_weights, config):
    from detectron2.modeling import build_model

    from maskrcnnpp.errors import UserError

    cfg = _tiny_cfg(config)
    model_keys = list(build_model(cfg).state_dict())
    missing = [k for k in model_keys if k not in _checkpoint_state(rcnnpp_weights)]
    assert missing  # Mask R-CNN's FPN / the U-Net decoder are not in a Mask RCNN++ checkpoint
    with pytest.raises(UserError) as exc:
        NucleiPredictor(cfg, rcnnpp_weights, config_name=config)
    msg = str(exc.value)
    assert msg.startswith(f"weights {rcnnpp_weights} do not fit config {config} ({cfg.MODEL.META_ARCHITECTURE}, "
                          f"{cfg.MODEL.BACKBONE.NAME}): {len(missing)} of the model's {len(model_keys)} weights are "
                          f"not in the checkpoint (e.g. {', '.join(missing[:3])}, ...); ")
    assert "\n" not in msg


def test_weights_of_another_shape_are_refused_and_the_saved_config_is_named(tmp_path):
    from maskrcnnpp.errors import UserError

    from detectron2.modeling import build_model

    weights = save_tiny_weights(tmp_path)  # NUM_CLASSES 1: cls_score has 2 rows (nucleus, background)
    (tmp_path / "config.yaml").write_text("# what tools/train_net.py saves beside its checkpoints\n")
    cfg = _tiny_cfg("maskrcnnpp_tiny", ["MODEL.ROI_HEADS.NUM_CLASSES", "2"])
    model_state, saved = build_model(cfg).state_dict(), _checkpoint_state(weights)
    other_shape = [k for k, v in model_state.items() if v.shape != saved[k].shape]
    assert len(other_shape) == 6  # box classifier, box regressor, mask predictor: weight and bias each
    with pytest.raises(UserError) as exc:
        NucleiPredictor(cfg, weights)
    msg = str(exc.value)
    assert f": 6 of the model's {len(model_state)} weights are not in the checkpoint or have another shape (e.g. " in msg
    assert "(e.g. roi_heads.box_predictor.cls_score.weight (checkpoint [2, 256], model [3, 256]), " in msg
    assert msg.endswith(f"; {tmp_path / 'config.yaml'} (saved by tools/train_net.py next to it) is the config it was "
                        "trained with")
    assert "do not fit the config (MaskRCNNPlusPlus, build_resnet_unetpp_fpn_backbone): " in msg


def test_extra_checkpoint_entries_only_warn_and_the_model_is_fully_loaded(tmp_path, caplog):
    # A checkpoint trained with deep supervision has its auxiliary heads; the plain config does not use them.
    weights = save_tiny_weights(tmp_path, "maskrcnnpp_tiny")
    state = _checkpoint_state(weights)
    extra = {f"backbone.ds_heads.{i}.weight": torch.ones(1, 64, 1, 1) for i in range(4)}
    torch.save({"model": {**state, **extra}}, tmp_path / "with_ds.pth")
    with caplog.at_level(logging.WARNING):
        predictor = NucleiPredictor(_tiny_cfg("maskrcnnpp_tiny"), str(tmp_path / "with_ds.pth"), config_name="maskrcnnpp_tiny")
    loaded = predictor.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"weights {tmp_path / 'with_ds.pth'}: 4 checkpoint entries are not used by config maskrcnnpp_tiny "
        "(MaskRCNNPlusPlus, build_resnet_unetpp_fpn_backbone) (e.g. backbone.ds_heads.0.weight, "
        "backbone.ds_heads.1.weight, backbone.ds_heads.2.weight, ...); the model's own weights are all loaded"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the checkpoint of the same config: silent
        NucleiPredictor(_tiny_cfg("maskrcnnpp_tiny"), weights)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_batchnorm_statistics_count_num_batches_tracked_does_not_and_tied_weights_load_by_either_name(tmp_path):
    from maskrcnnpp.errors import UserError
    from maskrcnnpp.inference.predictor import load_weights

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    state = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    no_counter = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": no_counter}, tmp_path / "no_counter.pth")  # e.g. an older PyTorch's BatchNorm
    load_weights(model, str(tmp_path / "no_counter.pth"), "config test")
    assert torch.equal(model.state_dict()["1.running_var"], state["1.running_var"])
    no_stats = {k: v for k, v in state.items() if k != "1.running_var"}
    torch.save({"model": no_stats}, tmp_path / "no_stats.pth")
    with pytest.raises(UserError, match=r"do not fit config test: 1 of the model's 6 weights are not in the "
                                        r"checkpoint \(e\.g\. 1\.running_var\)"):
        load_weights(model, str(tmp_path / "no_stats.pth"), "config test")

    tied = torch.nn.Module()
    tied.encoder = torch.nn.Linear(2, 2)
    tied.decoder = tied.encoder  # one tensor, two names in the state dict
    torch.save({"model": {"encoder.weight": torch.ones(2, 2), "encoder.bias": torch.zeros(2)}}, tmp_path / "tied.pth")
    load_weights(tied, str(tmp_path / "tied.pth"), "config test")
    assert torch.equal(tied.decoder.weight, torch.ones(2, 2))


def test_thresholds_outside_0_1_are_refused(tiny_predictor):
    from maskrcnnpp.errors import UserError

    for value in (1.5, -0.01, float("nan")):
        with pytest.raises(UserError, match=r"^score_thresh must be in \[0, 1\]"):
            NucleiPredictor(tiny_predictor.cfg, model=tiny_predictor.model, score_thresh=value)
    for key in ("TEST.NUCLEI.SCORE_THRESH", "TEST.NUCLEI.MASK_THRESH"):
        cfg = _tiny_cfg("maskrcnnpp_tiny", [key, "1.5"])
        with pytest.raises(UserError, match=rf"^{key} must be in \[0, 1\] \(a score/probability\), got 1.5$"):
            NucleiPredictor(cfg, model=tiny_predictor.model)
    assert NucleiPredictor(tiny_predictor.cfg, model=tiny_predictor.model, score_thresh=1).score_thresh == 1.0
