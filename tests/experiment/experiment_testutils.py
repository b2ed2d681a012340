"""Helpers of the experiment tests: a finished experiment (tools/ loading and fast overrides come from
tests/helpers/tiny_tool_helpers.py)."""
from tiny_tool_helpers import FAST_OPTS, REPO, load_tool  # noqa: F401  (re-exported to the tests)


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
