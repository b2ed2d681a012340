"""Config keys of the semantic encoder-decoder baselines (U-Net, UNet+, UNet++, UNet 3+)."""
from detectron2.config import CfgNode as CN


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
