"""All of maskrcnnpp's configuration keys with their defaults, and config loading.

Every key has a comment; the YAMLs in ``configs/`` only override them. Users change widths,
norms, decoders and thresholds from a YAML or the command line, never by editing code. This is
the only place defaults live: other modules read them from a config.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .errors import UserError

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
AUTO_DEVICE = "auto"  # MODEL.DEVICE: the GPU when there is one, else the CPU


def add_maskrcnnpp_config(cfg: CN) -> None:
    """Add the maskrcnnpp keys (with their defaults) to a Detectron2 ``cfg`` in place."""
    # Device of the model: "auto" (the GPU when torch sees one, else the CPU; setup_cfg resolves it
    # and the tools' "device:" line says which), or "cpu", "cuda", "cuda:K" as in Detectron2 (whose
    # default is "cuda"). "cuda" asked for on a machine without a GPU: a warning, then the CPU.
    cfg.MODEL.DEVICE = AUTO_DEVICE

    # ---------------------------------------------------------------- Mask RCNN++ pyramid
    cfg.MODEL.UNETPP_FPN = CN()
    # ResNet stages feeding the pyramid, finest first; must be consecutive (res2..res5 -> p2..p5).
    cfg.MODEL.UNETPP_FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Channels of every output p2..p6 (what the RPN/ROI heads see), as FPN's OUT_CHANNELS.
    cfg.MODEL.UNETPP_FPN.OUT_CHANNELS = 256
    # Width of the nested nodes X^{i,j} per level i (finest first). Empty: OUT_CHANNELS at every
    # level (paper-faithful, ~100 GMACs at 512^2); e.g. [64, 128, 256, 256] is the lean variant.
    cfg.MODEL.UNETPP_FPN.WIDTHS = []
    # Norm after each node's 3x3 conv and after laterals/outputs: "", "BN", "SyncBN", "nnSyncBN",
    # "naiveSyncBN", "GN" (32 groups: widths must be multiples of 32), "FrozenBN".
    cfg.MODEL.UNETPP_FPN.NORM = ""
    # U(.) in Eq. 1, the 2x upsampling of X^{i+1,j-1}: "nearest" or "bilinear".
    cfg.MODEL.UNETPP_FPN.UPSAMPLE = "nearest"
    # How a node merges its inputs: "concat" (the paper) or "sum" (ablation; inputs projected first).
    cfg.MODEL.UNETPP_FPN.FUSE = "concat"
    # Channels of an optional 1x1 reduction before each node's 3x3 conv (0: none, the paper).
    cfg.MODEL.UNETPP_FPN.BOTTLENECK = 0
    # Auxiliary deep supervision: 1x1 foreground heads on X^{0,1..3} (stride 4), trained with the
    # hybrid BCE + soft-Dice loss against the union of the instance masks. Off by default.
    cfg.MODEL.UNETPP_FPN.DEEP_SUPERVISION = False
    # Weight of the (head-averaged) deep-supervision loss added to Mask R-CNN's losses.
    cfg.MODEL.UNETPP_FPN.DEEP_SUPERVISION_WEIGHT = 0.5
    # Feed the network channels_last tensors (faster convs on recent GPUs; same numbers).
    cfg.MODEL.UNETPP_FPN.CHANNELS_LAST = False

    # ---------------------------------------------------------------- semantic baselines
    # (keys of the encoder-decoder meta-architecture; see maskrcnnpp/modeling/semantic)
    add_semantic_config(cfg)

    # ---------------------------------------------------------------- nuclei evaluation
    cfg.TEST.NUCLEI = CN()
    # Instances scoring below this are dropped before the nuclei metrics (COCO AP uses them all).
    cfg.TEST.NUCLEI.SCORE_THRESH = 0.5
    # Threshold on soft mask probabilities (Detectron2 pastes masks at 0.5 already).
    cfg.TEST.NUCLEI.MASK_THRESH = 0.5
    # COCO evaluation max detections per image (COCO's 100 undercounts crowded DSB images).
    cfg.TEST.NUCLEI.MAX_DETS = 500
    # Also compute COCO box/mask AP (needs the dataset registered with a COCO json).
    cfg.TEST.NUCLEI.COCO_AP = True
    # The model's nominal nucleus diameter in pixels: the typical diameter of its training nuclei as
    # it saw them after the training resize (maskrcnnpp.data.nucleus_size; tools/model_zoo.py
    # diameter computes it from the training annotations). Prediction given the nucleus diameter of
    # an image (NucleiPredictor(diameter=...), tools/predict.py --diameter) rescales the image by
    # NOMINAL_DIAMETER / diameter instead of the INPUT.MIN_SIZE_TEST resize. 0: unknown, and
    # prediction with a diameter is refused. Shipped models set it from maskrcnnpp/weights/zoo.json.
    cfg.TEST.NUCLEI.NOMINAL_DIAMETER = 0.0
    # The nucleus diameter prediction uses when none is given (NucleiPredictor, tools/predict.py, the
    # napari widget): "" or "none" for none (the INPUT.MIN_SIZE_TEST resize), "auto" (estimated per
    # image), or pixels as quoted text (yacs reads a bare 14 as a number), e.g. "'14'". Shipped models
    # set it from maskrcnnpp/weights/zoo.json.
    cfg.TEST.NUCLEI.DIAMETER = ""
    # Diameter "auto": the second pass (at the estimated diameter's factor) is skipped when that factor
    # is within this relative distance of the first pass's factor (the first pass is kept).
    cfg.TEST.NUCLEI.AUTO_DIAMETER_TOLERANCE = 0.1
    # Diameter "auto": the (low, high) nucleus diameters, in model-input pixels, the model was trained
    # on (maskrcnnpp.data.nucleus_size; shipped models set it from maskrcnnpp/weights/zoo.json). An
    # image whose nuclei the first pass finds inside it keeps that pass; one outside is rescaled so
    # its nuclei land on the nearer end. (0, 0): no range, every image is rescaled to NOMINAL_DIAMETER.
    cfg.TEST.NUCLEI.AUTO_DIAMETER_RANGE = (0.0, 0.0)
    # When not to trust a prediction (maskrcnnpp/inference/trust.py): tools/predict.py's summary.csv
    # and one warning line per image name the reasons. Nuclei outside AUTO_DIAMETER_RANGE and images
    # without a nucleus are always flagged; these add the model's own weak spots, measured on the
    # out-of-distribution check (tools/ood_check.py). Shipped models set them in their config.
    cfg.TEST.NUCLEI.TRUST = CN()
    # Image kinds the model is known to be weak on: any of "fluorescence", "bright-field", "stained tissue".
    cfg.TEST.NUCLEI.TRUST.WEAK_KINDS = []
    # A mean detection score of the kept nuclei below this flags the image (0: never).
    cfg.TEST.NUCLEI.TRUST.MIN_MEAN_SCORE = 0.0
    # Nuclei whose median diameter (model-input pixels) lies outside AUTO_DIAMETER_RANGE by more than
    # this fraction flag the image ("auto" lands nuclei on the range's ends, a little either side).
    cfg.TEST.NUCLEI.TRUST.DIAMETER_MARGIN = 0.25

    # Canonical model input (maskrcnnpp/modeling/canonical_input.py), applied by the model itself
    # before PIXEL_MEAN / PIXEL_STD, so training, evaluation and prediction see the same input.
    # All off here (Detectron2's behaviour); the out-of-distribution recipes switch them on.
    cfg.MODEL.CANONICAL_INPUT = CN()
    # Replace the colours by their grey mean (stain colours vary between labs and microscopes).
    cfg.MODEL.CANONICAL_INPUT.GREY = False
    # Invert (255 - v) images whose median lies above the middle of their low and high percentiles:
    # bright-field and H&E nuclei (dark on bright) then look like fluorescence (bright on dark).
    cfg.MODEL.CANONICAL_INPUT.INVERT_BRIGHT = False
    # [low, high] percentiles of each image stretched to 0 and 255 (e.g. [1.0, 99.8]); [] is off.
    cfg.MODEL.CANONICAL_INPUT.PERCENTILES = []

    # ---------------------------------------------------------------- data
    cfg.DATASETS.NUCLEI = CN()
    # Root of a folder prepared by datasets/prepare_dsb2018.py ("" = $MASKRCNNPP_DSB2018 or
    # $DETECTRON2_DATASETS/dsb2018). Registration reads it when the dataset is first loaded.
    cfg.DATASETS.NUCLEI.DSB2018_ROOT = ""
    # Number of images per split of the synthetic nuclei sets (nuclei_synth_{train,val,test}).
    cfg.DATASETS.NUCLEI.SYNTH_IMAGES = [48, 12, 12]
    # Side of the synthetic images in pixels.
    cfg.DATASETS.NUCLEI.SYNTH_SIZE = 128
    # Your own folders prepared by datasets/prepare_folder.py, by name: [NAME, FOLDER] pairs (or
    # "NAME=FOLDER" strings), e.g. [["mylab", "datasets/mylab"]]; each registers NAME_train,
    # NAME_val, NAME_test and NAME_all (relative folders are taken from the current directory).
    cfg.DATASETS.NUCLEI.FOLDERS = []
    # Mask R-CNN family with INPUT.MASK_FORMAT "bitmask": train through
    # maskrcnnpp.data.instance_mapper.NucleiInstanceMapper, which gives the same inputs as
    # Detectron2's DatasetMapper but decodes and resizes the RLE masks of all instances at once
    # (DSB 2018 loader, 4 workers on 2 cores, tools/benchmark.py: 13-17 -> 44-61 images/s).
    # False: the stock DatasetMapper.
    cfg.DATALOADER.FAST_INSTANCE_MAPPER = True

    # Training augmentations of the Mask R-CNN family's and the semantic models' mappers, after
    # Detectron2's resize and INPUT.RANDOM_FLIP (maskrcnnpp/data/augmentations.py). All off here
    # (Detectron2's behaviour); the DSB configs switch on the measured recipe (docs/results.md).
    cfg.INPUT.NUCLEI_AUG = CN()
    # A second, independent random flip, vertical (p = 0.5).
    cfg.INPUT.NUCLEI_AUG.VERTICAL_FLIP = False
    # A random rotation by 0, 90, 180 or 270 degrees; with both flips, all 8 orientations.
    cfg.INPUT.NUCLEI_AUG.ROTATE_90 = False
    # [low, high] of a uniform random factor on pixel values ([1, 1]: off).
    cfg.INPUT.NUCLEI_AUG.BRIGHTNESS = [1.0, 1.0]
    # [low, high] of a uniform random factor on the spread of pixel values about their mean.
    cfg.INPUT.NUCLEI_AUG.CONTRAST = [1.0, 1.0]
    # [low, high] of a uniform random exponent on values scaled to [0, 1].
    cfg.INPUT.NUCLEI_AUG.GAMMA = [1.0, 1.0]
    # Probability of inverting the image (255 - v): fluorescence looks like bright-field and back.
    cfg.INPUT.NUCLEI_AUG.INVERT_PROB = 0.0
    # Probability of replacing the colours by their grey mean (stain colours vary between labs).
    cfg.INPUT.NUCLEI_AUG.GREY_PROB = 0.0
    # Probability of detail loss: the image (after the resize) shrunk by a factor drawn from
    # DETAIL_LOSS and enlarged back, so the model also learns images of a lower resolution.
    cfg.INPUT.NUCLEI_AUG.DETAIL_LOSS_PROB = 0.0
    # [low, high] of that factor, 0 < low <= high <= 1.
    cfg.INPUT.NUCLEI_AUG.DETAIL_LOSS = [0.5, 1.0]
    # Probability of stain jitter of a coloured image (grey ones are left): each stain's optical
    # density in the haematoxylin-eosin-DAB space scaled by [1 - HED_SIGMA, 1 + HED_SIGMA] and
    # shifted by [-HED_SIGMA, HED_SIGMA] / 10 (Tellez et al. 2018).
    cfg.INPUT.NUCLEI_AUG.HED_PROB = 0.0
    # That sigma, in [0, 1).
    cfg.INPUT.NUCLEI_AUG.HED_SIGMA = 0.05
    # Probability of a Gaussian blur, last but for the noise (out-of-focus images).
    cfg.INPUT.NUCLEI_AUG.BLUR_PROB = 0.0
    # [low, high] of its standard deviation in pixels of the resized image, 0 <= low <= high.
    cfg.INPUT.NUCLEI_AUG.BLUR_SIGMA = [0.0, 1.5]
    # Probability of additive Gaussian noise, the last augmentation (camera noise).
    cfg.INPUT.NUCLEI_AUG.NOISE_PROB = 0.0
    # [low, high] of its standard deviation in pixel values (0..255), 0 <= low <= high.
    cfg.INPUT.NUCLEI_AUG.NOISE_STD = [0.0, 8.0]

    # ---------------------------------------------------------------- solver / training loop
    # Checkpoint with the best validation value of this metric is kept as model_best.pth.
    cfg.SOLVER.BEST_CHECKPOINT_METRIC = "nuclei/score"
    # Datasets evaluated every TEST.EVAL_PERIOD during training (DATASETS.TEST is scored at the end).
    cfg.DATASETS.VAL = ()


def get_maskrcnnpp_cfg() -> CN:
    """Detectron2's default config with every maskrcnnpp key added."""
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    return cfg


def resolve_config_path(name_or_path: str) -> str:
    """Return a config file path: an existing path as is, else a bare name looked up in ``configs/``."""
    if os.path.isfile(name_or_path):
        return name_or_path
    dirs = [CONFIGS_DIR, Path.cwd() / "configs"]
    # "configs/x.yaml" typed outside the checkout means our configs/x.yaml, as it does inside it
    # (only that relative form: a path elsewhere that does not exist is an error, not our file).
    names = [name_or_path, f"{name_or_path}.yaml"]
    if len(Path(name_or_path).parts) == 2 and Path(name_or_path).parts[0] == "configs":
        names.append(Path(name_or_path).name)
    for candidate in [d / n for d in dirs for n in names]:
        if candidate.is_file():
            return str(candidate)
    available = sorted(p.name for p in CONFIGS_DIR.glob("*.yaml") if not p.name.startswith("Base"))
    raise FileNotFoundError(
        f"config {name_or_path!r} is neither a file nor a name in {CONFIGS_DIR}; available: {', '.join(available)}"
    )


def add_semantic_config(cfg: CN) -> None:
    """Add ``MODEL.SEMANTIC_UNET`` (meta-architecture ``SemanticUNet``) with its defaults, in place."""
    cfg.MODEL.SEMANTIC_UNET = CN()
    sc = cfg.MODEL.SEMANTIC_UNET
    # ------------------------------------------------------------------ architecture
    # Decoder on the ResNet encoder (levels 0..4 = stem conv, res2..res5): "unet" (same-scale
    # skips), "unetplus" (UNet+, adjacent-node skips), "unetpp" (UNet++, dense skips, Eq. 1),
    # "unet3p" (UNet 3+, full-scale skips), or any name registered in SEMANTIC_DECODER_REGISTRY.
    sc.DECODER = "unetpp"
    # Channels of the decoder nodes X^{i,j>=1} on levels i = 0..3 (strides 2..16), as UNet++'s
    # 32/64/128/256; level 4 hosts no decoder node (X^{4,0} is res5 itself). unet3p ignores it.
    sc.WIDTHS = [32, 64, 128, 256]
    # Number of 3x3 conv + norm + ReLU in each U-Net/UNet+/UNet++ node H(.) (2 in the papers).
    sc.NODE_CONVS = 2
    # Norm in the decoder convs: "" (none, conv bias), "BN", "SyncBN", "nnSyncBN", "naiveSyncBN",
    # "GN" (32 groups: WIDTHS / UNET3P_CAT_CHANNELS must be multiples of 32), "FrozenBN". The
    # encoder's norm is MODEL.RESNETS.NORM.
    sc.NORM = "BN"
    # U(.): how coarser maps are upsampled into a node: "bilinear" or "nearest".
    sc.UPSAMPLE = "bilinear"
    # UNet 3+: channels each of the 5 inputs of a decoder stage is projected to (the paper's 64);
    # a stage then has 5x this many channels.
    sc.UNET3P_CAT_CHANNELS = 64
    # Deep supervision: heads on X^{0,1..4} (unetplus/unetpp) or on every UNet 3+ stage and
    # X^{4,0} (unet3p), each trained with LOSS, equal weights. unet has one head and needs False.
    sc.DEEP_SUPERVISION = True
    # Predict a second, nucleus-boundary channel (trained on instance contours) whose
    # probability seeds the watershed split in post-processing.
    sc.BOUNDARY = False
    # UNet 3+ classification-guided module: an image-level "has nuclei" classifier on X^{4,0}
    # (dropout, 1x1 conv, global max-pool) whose negative verdict zeroes the prediction at test.
    sc.CGM = False
    # ------------------------------------------------------------------ losses
    # "bce_dice": UNet++'s hybrid BCE + soft Dice (Eq. 2); "unet3p_hybrid": focal + MS-SSIM + IoU.
    sc.LOSS = "bce_dice"
    # Weights of the BCE and (1 - Dice) terms of "bce_dice" (the UNet++ paper: equal).
    sc.BCE_WEIGHT = 1.0
    sc.DICE_WEIGHT = 1.0
    # Smoothing constant added to numerator and denominator of the soft Dice and IoU terms.
    sc.SMOOTH = 1.0
    # Focal-loss alpha and gamma of "unet3p_hybrid" (torchvision's sigmoid_focal_loss).
    sc.FOCAL_ALPHA = 0.25
    sc.FOCAL_GAMMA = 2.0
    # Weight of the boundary channel's loss (same LOSS, boundary target) when BOUNDARY is True.
    sc.BOUNDARY_WEIGHT = 1.0
    # Weight of the CGM's image-level binary cross-entropy when CGM is True.
    sc.CGM_WEIGHT = 1.0
    # ------------------------------------------------------------------ inference
    # "ensemble": average of all heads' probabilities; "final": the deepest head only (X^{0,4});
    # "L1".."L4": pruned UNet++/UNet+ using head X^{0,d}, computing only nodes with i + j <= d
    # and encoder levels 0..d (L1 runs stem + res2 only). Needs DEEP_SUPERVISION for L1..L3.
    sc.INFERENCE_MODE = "ensemble"
    # Foreground where probability > THRESHOLD (post-processing into instances).
    sc.THRESHOLD = 0.5
    # Connected foreground components smaller than this many pixels are dropped as noise.
    sc.MIN_SIZE = 10
    # Split touching nuclei by watershed (distance-transform seeds unless BOUNDARY is on).
    sc.WATERSHED = True
    # Distance-transform seeds are h-maxima with this dynamic (pixels): two maxima stay separate
    # seeds only if the distance drops by at least this much between them.
    sc.WATERSHED_H = 2.0
    # With BOUNDARY: watershed seeds are foreground pixels with boundary probability below this.
    sc.BOUNDARY_THRESHOLD = 0.5
    # Images with a side larger than TILE_SIZE are predicted by overlap-tile (mirrored borders);
    # 0 predicts every image whole (padded to a multiple of 32).
    sc.TILE_SIZE = 512
    # Context margin (pixels) discarded on each side of a tile; neighbouring tiles overlap by 2x.
    sc.TILE_OVERLAP = 64
    # Tiles run through the network together in one batch.
    sc.TILE_BATCH_SIZE = 4
    # ------------------------------------------------------------------ data
    # Side of the random square training crops (the UNet++ paper's 96x96 patches); images smaller
    # than this are mirror-padded first. 0 trains on whole images (batch padding is ignored).
    sc.TRAIN_CROP = 96


def resolve_device(device: str, config: str = "the config", explicit: bool = False) -> str:
    """The torch device MODEL.DEVICE ``device`` runs on here: "auto" is "cuda" when torch sees a GPU,
    else "cpu" (silently); any other value is kept, except a CUDA device on a machine without one.

    Such a request falls back to "cpu" with a warning naming ``config`` when it came from a config
    file or a ``MODEL.DEVICE`` override, and is a :class:`UserError` when ``explicit`` (a device
    argument, e.g. ``--device cuda``).
    """
    import torch

    if device == AUTO_DEVICE:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        if explicit:
            raise UserError(f"device {device!r} (MODEL.DEVICE) was asked for but torch.cuda.is_available() is False on this machine")
        logging.getLogger(__name__).warning("%s: MODEL.DEVICE %s but no GPU is available: running on the CPU",
                                            config, device)
        return "cpu"
    return device


def setup_cfg(config: str, opts: Sequence[str] = (), device: Optional[str] = None) -> CN:
    """Load ``config`` (a path or a bare name in ``configs/``), apply ``opts``; pick the device.

    ``device`` (None: the config's MODEL.DEVICE) is resolved by :func:`resolve_device`: "auto" (the
    default of every config) becomes the GPU when there is one, else the CPU; a CUDA device the
    config or ``opts`` ask for on a machine without one falls back to the CPU with a warning, and
    one asked for by ``device`` is a :class:`UserError`.
    """
    try:
        path = resolve_config_path(config)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if len(opts) % 2:
        raise UserError(f"config overrides come as KEY VALUE pairs; got {len(opts)} items: {list(opts)}")
    cfg = get_maskrcnnpp_cfg()
    try:
        cfg.merge_from_file(path)
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:  # yacs: KeyError from files, AssertionError from overrides
        raise UserError(f"{e.args[0] if e.args else e} (in {path} or the command-line overrides); "
                        "see maskrcnnpp/config.py and Detectron2's defaults for the valid keys") from None
    except ValueError as e:
        raise UserError(f"bad override in {list(opts)}: {e}") from None
    cfg.MODEL.DEVICE = resolve_device(cfg.MODEL.DEVICE if device is None else device, config,
                                      explicit=device is not None)
    cfg.freeze()
    return cfg


def offline_variant(config: str) -> str:
    """The from-scratch config to suggest when ``config``'s ImageNet weights cannot be downloaded."""
    try:
        path = resolve_config_path(config)
    except FileNotFoundError:
        path = config
    stem = os.path.splitext(os.path.basename(path))[0]
    candidate = os.path.join(os.path.dirname(path), f"{stem}_scratch.yaml")
    if os.path.isfile(candidate):
        return os.path.basename(candidate)
    return "a *_scratch.yaml config (GroupNorm, from scratch)"
