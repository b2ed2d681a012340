"""Models: the UNet++ pyramid backbone (Mask RCNN++), its meta-architecture, semantic baselines."""
from .unetpp_fpn import UNetPlusPlusFPN, build_resnet_unetpp_fpn_backbone  # noqa: F401
from .meta_arch import MaskRCNNPlusPlus  # noqa: F401
from . import semantic  # noqa: F401  (registers SemanticUNet)
