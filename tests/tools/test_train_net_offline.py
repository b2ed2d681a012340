"""The design's own command offline: tools/train_net.py --config maskrcnnpp_r101.yaml on a machine
without internet stops with one error line and exit status 2 -- first for the DSB 2018 data that is
not prepared, then (data prepared) for the ImageNet weights that cannot be downloaded, naming the
from-scratch config to use. No network is touched: downloads go to a proxy that refuses them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from data_testutils import standard_samples, write_kaggle_source
from maskrcnnpp.data.dsb2018 import prepare_dsb2018

REPO = Path(__file__).resolve().parents[2]


def train_net(tmp_path: Path, dsb_root: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MASKRCNNPP_DSB2018", "MASKRCNNPP_DSB2018_ZIP")}
    refused = "http://127.0.0.1:9"  # the discard port: nothing listens, every download is refused at once
    env.update(FVCORE_CACHE=str(tmp_path / "weights_cache"), https_proxy=refused, HTTPS_PROXY=refused,
               http_proxy=refused, HTTP_PROXY=refused, no_proxy="", NO_PROXY="")
    return subprocess.run([sys.executable, str(REPO / "tools" / "train_net.py"), "--config", "maskrcnnpp_r101.yaml",
                           "DATASETS.NUCLEI.DSB2018_ROOT", str(dsb_root), "OUTPUT_DIR", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def error_lines(res: subprocess.CompletedProcess):
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def test_unprepared_dsb_data_is_the_first_error(tmp_path):
    dsb = tmp_path / "dsb2018"
    assert error_lines(train_net(tmp_path, dsb)) == [
        f"error: dsb2018_train: no prepared DSB 2018 data at {dsb} (missing {dsb / 'annotations' / 'train.json'}). "
        f"Prepare it with: python datasets/prepare_dsb2018.py --src PATH/TO/stage1_train.zip --out {dsb} , or set "
        "DATASETS.NUCLEI.DSB2018_ROOT / MASKRCNNPP_DSB2018 to a prepared folder"]
    assert not (tmp_path / "out").exists()  # nothing written before the data is there


def test_with_the_data_prepared_the_imagenet_weights_that_cannot_be_downloaded_are_the_error(tmp_path):
    src = write_kaggle_source(tmp_path / "src", standard_samples(6, 24, 32))
    prepare_dsb2018(src, tmp_path / "dsb2018", workers=1, progress=False)
    lines = error_lines(train_net(tmp_path, tmp_path / "dsb2018"))
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot download MODEL.WEIGHTS=detectron2://ImageNetPretrained/MSRA/R-101.pkl (")
    assert lines[0].endswith("). Offline, train from scratch with --config maskrcnnpp_r101_scratch.yaml, or pass "
                             "MODEL.WEIGHTS path/to/local.pkl")
