"""Config keys of the semantic encoder-decoder baselines (U-Net, UNet+, UNet++, UNet 3+)."""
from detectron2.config import CfgNode as CN


def add_semantic_config(cfg: CN) -> None:
    """Add ``MODEL.SEMANTIC_UNET`` (filled in by the semantic-baselines module)."""
    cfg.MODEL.SEMANTIC_UNET = CN()
