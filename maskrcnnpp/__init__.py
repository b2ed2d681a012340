"""maskrcnnpp: Mask RCNN++ (Mask R-CNN whose FPN uses UNet++ nested dense skips) on Detectron2.

Importing the package applies the Detectron2 compatibility measures (``maskrcnnpp.compat``),
then registers the project's backbones, meta-architectures and datasets in Detectron2's
registries, so ``build_model(cfg)`` finds them by the names used in ``configs/``.
"""
from . import compat

compat.apply()

from .config import add_maskrcnnpp_config, get_maskrcnnpp_cfg, resolve_config_path  # noqa: E402
from . import data, evaluation, modeling  # noqa: E402,F401  (registers components)

__version__ = "0.1.0"
__all__ = ["NucleiPredictor", "add_maskrcnnpp_config", "get_maskrcnnpp_cfg", "resolve_config_path", "__version__"]


def __getattr__(name: str):
    # ``from maskrcnnpp import NucleiPredictor`` without importing the inference layer on every import
    if name == "NucleiPredictor":
        from .inference import NucleiPredictor

        return NucleiPredictor
    raise AttributeError(f"module 'maskrcnnpp' has no attribute {name!r}")
