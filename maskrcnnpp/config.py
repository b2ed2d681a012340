"""All of maskrcnnpp's configuration keys, added to a Detectron2 config by one function.

Every key has a comment; the YAMLs in ``configs/`` only override them. Users change widths,
norms, decoders and thresholds from a YAML or the command line, never by editing code.
"""
from __future__ import annotations

import os
from pathlib import Path

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


def add_maskrcnnpp_config(cfg: CN) -> None:
    """Add the maskrcnnpp keys (with their defaults) to a Detectron2 ``cfg`` in place."""
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
    from .modeling.semantic_config import add_semantic_config

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

    # ---------------------------------------------------------------- data
    cfg.DATASETS.NUCLEI = CN()
    # Root of a folder prepared by datasets/prepare_dsb2018.py ("" = $MASKRCNNPP_DSB2018 or
    # $DETECTRON2_DATASETS/dsb2018). Registration reads it when the dataset is first loaded.
    cfg.DATASETS.NUCLEI.DSB2018_ROOT = ""
    # Number of images per split of the synthetic nuclei sets (nuclei_synth_{train,val,test}).
    cfg.DATASETS.NUCLEI.SYNTH_IMAGES = [48, 12, 12]
    # Side of the synthetic images in pixels.
    cfg.DATASETS.NUCLEI.SYNTH_SIZE = 128
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
