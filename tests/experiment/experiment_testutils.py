"""Helpers shared by the experiment tests: tools/ loaded as modules, fast overrides for tiny models, a finished experiment."""
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


def finished_experiment(tmp_path_factory, name: str, make_args):
    """An experiment run once for a test module: (tool, base folder, external test root, report).

    ``make_args(out, test_root)`` gives the command's arguments; the test set is one synthetic image.
    """
    from maskrcnnpp.data import build_synthetic_dataset

    base = tmp_path_factory.mktemp(name)
    test_root = base / "external"
    build_synthetic_dataset(test_root, num_images=1, size=64, seed=7, split="test")
    tool = load_tool("experiment")
    return tool, base, test_root, tool.main(make_args(base / "out", test_root))
