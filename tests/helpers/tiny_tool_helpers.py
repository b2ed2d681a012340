"""Helpers of the benchmark and experiment tests: tools/ loaded as modules, fast overrides for tiny models."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Few proposals/detections and 64 px synthetic nuclei keep randomly initialised tiny models fast.
FAST_OPTS = [
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "200", "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "10",
    "DATASETS.NUCLEI.SYNTH_IMAGES", "[2,1,1]", "DATASETS.NUCLEI.SYNTH_SIZE", "64",
]


def load_tool(name: str):
    """Import tools/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

