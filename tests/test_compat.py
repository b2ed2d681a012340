"""Each Detectron2 compatibility measure: what breaks without it, and that it fixes exactly that.

The "without" halves run in a fresh interpreter where every *other* measure is applied, so the
failure seen is the one the measure exists for.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest

from maskrcnnpp import compat


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def apply_all_but(name: str) -> str:
    # Load compat.py alone: importing the maskrcnnpp package would apply every measure.
    return f"""
import importlib.util
spec = importlib.util.spec_from_file_location("standalone_compat", {compat.__file__!r})
c = importlib.util.module_from_spec(spec)
spec.loader.exec_module(c)
for n, m in c.MEASURES.items():
    if n != {name!r}:
        m()
"""


needs_standin = pytest.mark.skipif(compat.has_compiled_ops(), reason="upstream Detectron2 with compiled _C is installed")


@needs_standin
def test_compiled_ops_standin():
    without = run_py(apply_all_but("detectron2._C") + "import detectron2.layers\n")
    assert without.returncode != 0 and "_C" in without.stderr
    with_it = run_py(
        """
        import maskrcnnpp, detectron2.layers, detectron2._C as C
        from maskrcnnpp.compat import CompiledOpsUnavailable
        assert C.IS_STANDIN
        try:
            C.deform_conv_forward()
        except CompiledOpsUnavailable as e:
            print("MSG", e)
        """
    )
    assert with_it.returncode == 0, with_it.stderr
    assert "use_fast_impl=False" in with_it.stdout and "deform_conv_forward" in with_it.stdout


@needs_standin
def test_environment_report_works_with_the_standin():
    # default_setup() of every trainer prints collect_env_info(), which queries _C's build info.
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2._C not built" in collect_env_info()


def test_compiled_ops_left_alone_when_real_extension_present(monkeypatch):
    real = types.ModuleType("detectron2._C")  # a real build has no IS_STANDIN marker
    monkeypatch.setitem(sys.modules, "detectron2._C", real)
    assert compat.has_compiled_ops()
    assert compat._patch_compiled_ops() is False
    assert sys.modules["detectron2._C"] is real


@pytest.mark.skipif(hasattr(__import__("PIL.Image").Image, "__dict__") and "LINEAR" in __import__("PIL.Image").Image.__dict__ and "PIL.Image.LINEAR" not in compat.APPLIED, reason="this Pillow still has Image.LINEAR")
def test_pil_linear():
    without = run_py(apply_all_but("PIL.Image.LINEAR") + "import detectron2.data.transforms\n")
    assert without.returncode != 0 and "LINEAR" in without.stderr
    with_it = run_py(
        """
        import maskrcnnpp
        from PIL import Image
        from detectron2.data.transforms import ExtentTransform
        assert ExtentTransform((0, 0, 4, 4), (2, 2)).interp == Image.BILINEAR
        """
    )
    assert with_it.returncode == 0, with_it.stderr


HISTOGRAM = """
from detectron2.data.build import print_instances_class_histogram
print_instances_class_histogram([{"annotations": [{"category_id": 0}, {"category_id": 0}]}], ["nucleus"])
print("HISTOGRAM-OK")
"""


@pytest.mark.skipif("numpy.int/float/bool" not in compat.APPLIED, reason="this NumPy still has np.int")
def test_numpy_aliases():
    without = run_py(apply_all_but("numpy.int/float/bool") + HISTOGRAM)
    assert without.returncode != 0 and "np.int" in without.stderr.replace("numpy", "np")
    with_it = run_py("import maskrcnnpp\n" + HISTOGRAM)
    assert with_it.returncode == 0 and "HISTOGRAM-OK" in with_it.stdout, with_it.stderr


def test_pkg_resources_standin_when_setuptools_lacks_it():
    # Simulate setuptools >= 81 (no pkg_resources) whatever is installed here.
    block = "import sys\nsys.modules['pkg_resources'] = None\n"
    without = run_py(block + apply_all_but("pkg_resources") + "from detectron2 import model_zoo\n")
    assert without.returncode != 0 and "pkg_resources" in without.stderr
    with_it = run_py(
        block
        + """
import sys; del sys.modules['pkg_resources']
import builtins
real_import = builtins.__import__
def no_pkg_resources(name, *a, **k):
    if name == 'pkg_resources' and 'pkg_resources' not in sys.modules:
        raise ImportError('No module named pkg_resources')
    return real_import(name, *a, **k)
builtins.__import__ = no_pkg_resources
import maskrcnnpp, os
from detectron2 import model_zoo
assert sys.modules['pkg_resources'].IS_STANDIN
path = model_zoo.get_config_file('COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml')
assert os.path.isfile(path), path
print('ZOO-OK')
"""
    )
    assert with_it.returncode == 0 and "ZOO-OK" in with_it.stdout, with_it.stderr


def test_pkg_resources_deprecation_warning_of_setuptools_80_is_not_printed(tmp_path):
    # setuptools 80 (as on the GPU machine) warns when pkg_resources is first imported; a stand-in
    # module that warns the same way, whatever setuptools is installed here.
    (tmp_path / "pkg_resources.py").write_text(
        "import warnings\n"
        "warnings.warn('pkg_resources is deprecated as an API. See https://setuptools.pypa.io', UserWarning, stacklevel=2)\n"
        "def resource_filename(package, resource):\n    raise AssertionError('not called')\n")
    probe = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
    without = run_py(probe + "import pkg_resources\n")
    assert "pkg_resources is deprecated" in without.stderr  # the stand-in does warn
    with_it = run_py(probe + "import maskrcnnpp, sys\nfrom detectron2 import model_zoo\n"
                     "assert sys.modules['pkg_resources'].__file__.startswith(sys.path[0])\nprint('OK')\n")
    assert with_it.returncode == 0 and "OK" in with_it.stdout, with_it.stderr
    assert "pkg_resources is deprecated" not in with_it.stderr


def test_torch_jit_script_deprecation_silenced_only_for_the_imports_that_script():
    # fvcore.nn and detectron2.modeling.box_regression call torch.jit.script at import; torch
    # >= 2.10 warns about each. -W error turns the warning into the failure seen.
    without = run_py("import warnings\nwarnings.simplefilter('error', FutureWarning)\n"
                     + apply_all_but("torch.jit.script deprecation warnings") + "import detectron2.modeling\n")
    if without.returncode == 0:
        pytest.skip("this torch does not warn about torch.jit.script")
    assert "torch.jit.script` is deprecated" in without.stderr, without.stderr
    with_it = run_py(
        """
import warnings
warnings.simplefilter('error', FutureWarning)
import torch, maskrcnnpp
from maskrcnnpp import compat
from detectron2.modeling.box_regression import Box2BoxTransform
assert 'torch.jit.script deprecation warnings' in compat.APPLIED
# the scripted class still works: deltas of a box to itself are zero
t = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
b = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
assert torch.equal(t.get_deltas(b, b), torch.zeros(1, 4))
# the filter was scoped to those imports: the same warning raised later is not silenced
try:
    warnings.warn("`torch.jit.script` is deprecated (a later call)", FutureWarning)
    raise SystemExit("a later torch.jit.script warning was silenced")
except FutureWarning:
    pass
print('QUIET-OK')
"""
    )
    assert with_it.returncode == 0 and "QUIET-OK" in with_it.stdout, with_it.stderr


def test_import_registers_components():
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY

    assert "build_resnet_unetpp_fpn_backbone" in BACKBONE_REGISTRY
    assert "MaskRCNNPlusPlus" in META_ARCH_REGISTRY
    assert {"dsb2018_train", "dsb2018_val", "dsb2018_test", "dsb2018_all"} <= set(DatasetCatalog.list())


def test_meshgrid_indexing_warning_of_detectron2s_anchors_is_not_printed():
    # Detectron2's anchor generator calls torch.meshgrid without `indexing`; the anchors are the
    # same either way (the default is "ij"), only the warning goes.
    make_anchors = """
import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
gen = DefaultAnchorGenerator(sizes=[[8]], aspect_ratios=[[1.0]], strides=[4], offset=0.0)
anchors = gen([torch.zeros(1, 1, 2, 3)])[0].tensor
assert anchors.shape == (6, 4), anchors.shape
print('CENTRES', (anchors[:, :2] + anchors[:, 2:]).div(2).tolist())
"""
    without = run_py(apply_all_but("torch.meshgrid indexing warning") + make_anchors)
    if "torch.meshgrid" not in without.stderr:
        pytest.skip("this torch does not warn about meshgrid without indexing")
    with_it = run_py("import maskrcnnpp\n" + make_anchors)
    assert with_it.returncode == 0, with_it.stderr
    assert "torch.meshgrid" not in with_it.stderr
    centres = [[x, y] for y in (0.0, 4.0) for x in (0.0, 4.0, 8.0)]  # row by row: "ij" grid
    assert f"CENTRES {centres}" in with_it.stdout and f"CENTRES {centres}" in without.stdout


def test_map_dataset_falls_back_to_another_image_when_the_mapper_skips_one():
    # Detectron2 v0.6 draws the fallback with random.sample(<set>): a TypeError on Python >= 3.11
    skip_two = """
from detectron2.data.common import MapDataset
ds = MapDataset([1, 2, 3], lambda x: None if x == 2 else 2 * x)
picks = {ds[1] for _ in range(20)}
assert ds[0] == 2 and ds[2] == 6 and picks <= {2, 6}, picks
print('FALLBACK-OK')
"""
    without = run_py(apply_all_but("MapDataset fallback on Python >= 3.11") + skip_two)
    if without.returncode == 0:
        pytest.skip("this Python samples from sets")
    assert "Population must be a sequence" in without.stderr, without.stderr
    with_it = run_py("import maskrcnnpp\n" + skip_two)
    assert with_it.returncode == 0 and "FALLBACK-OK" in with_it.stdout, with_it.stderr


def test_resume_restores_the_state_of_torchs_own_lr_schedulers():
    # Detectron2 v0.6's LRScheduler hook kept state only for _LRScheduler subclasses; StepLR and
    # the other torch schedulers derive from LRScheduler since torch 2.0
    resume = """
import torch
from detectron2.engine import hooks
def hook_at(steps):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for _ in range(steps):
        opt.step(); sched.step()
    return hooks.LRScheduler(opt, sched), opt
saved, saved_opt = hook_at(7)
fresh, opt = hook_at(0)
opt.load_state_dict(saved_opt.state_dict())  # a checkpoint restores both, as the trainer's does
fresh.load_state_dict(saved.state_dict())
fresh.scheduler.step()  # the 8th step: lr 1.0 * 0.5 ** (8 // 3)
print('EPOCH', fresh.scheduler.last_epoch, 'LR', opt.param_groups[0]['lr'])
"""
    without = run_py(apply_all_but("LRScheduler hook state of torch schedulers") + resume)
    assert without.returncode == 0, without.stderr
    if "EPOCH 8" in without.stdout:
        pytest.skip("this Detectron2 keeps the state of torch's schedulers")
    assert "EPOCH 1 " in without.stdout  # restarted at 0, silently
    with_it = run_py("import maskrcnnpp\n" + resume)
    assert with_it.returncode == 0, with_it.stderr
    assert "EPOCH 8 LR 0.25" in with_it.stdout, with_it.stdout
