"""maskrcnnpp.cli: one error line and exit status 2 for user mistakes and full or read-only disks."""
from __future__ import annotations

import errno
import os

import pytest

from maskrcnnpp.cli import UserError, ensure_output_dir, exit_on_user_error


def refuse_writes(monkeypatch):
    def refuse(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
    monkeypatch.setattr("maskrcnnpp.cli.tempfile.TemporaryFile", refuse)


@pytest.mark.parametrize("code, advice", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"),
                                          (errno.EACCES, "no permission"), (errno.EDQUOT, "quota")])
def test_disk_errors_are_one_line_naming_the_file(capsys, code, advice):
    @exit_on_user_error
    def tool():
        raise OSError(code, os.strerror(code), "/data/out/a_labels.png")

    with pytest.raises(SystemExit) as exc:
        tool()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: /data/out/a_labels.png: {os.strerror(code)} (") and advice in err


def test_other_os_errors_still_raise():
    @exit_on_user_error
    def tool():
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        tool()


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    refuse_writes(monkeypatch)
    with pytest.raises(UserError, match=r"--out .*out: cannot write in the folder \(Read-only file system\)"):
        ensure_output_dir(str(tmp_path / "out"), "--out")
    with pytest.raises(UserError, match=r"--output .*out: cannot write in the folder"):
        ensure_output_dir(str(tmp_path / "out"), "--output", create=False)
    with pytest.raises(UserError, match=rf"--output .*new/deeper: cannot write in {tmp_path} to create it"):
        ensure_output_dir(str(tmp_path / "new" / "deeper"), "--output", create=False)
    assert not (tmp_path / "new").exists()


def test_a_writable_folder_is_made_and_left_empty(tmp_path):
    assert ensure_output_dir(str(tmp_path / "a" / "b"), "--out") == str(tmp_path / "a" / "b")
    assert os.listdir(tmp_path / "a" / "b") == []
    assert ensure_output_dir(str(tmp_path / "c"), "--out", create=False) == str(tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_a_path_under_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match=r"afile/sub: .*afile exists and is not a folder"):
        ensure_output_dir(str(tmp_path / "afile" / "sub"), "--out", create=False)


def _library_input_errors():
    from maskrcnnpp.data import DatasetNotPreparedError
    from maskrcnnpp.data.dsb2018 import DatasetError
    from maskrcnnpp.data.instance_mapper import InstanceAnnotationError
    from maskrcnnpp.evaluation import NucleiEvaluationInputError
    from maskrcnnpp.inference.image_io import ChannelChoiceNeeded, ImageReadError
    from maskrcnnpp.utils.images import ImageLayoutError
    from maskrcnnpp.utils.kaggle_rle import KaggleCsvError, RLEError
    from maskrcnnpp.vis.plot_inputs import PlotInputError

    return [(DatasetNotPreparedError, FileNotFoundError), (DatasetError, ValueError), (InstanceAnnotationError, ValueError),
            (NucleiEvaluationInputError, ValueError), (ImageReadError, ValueError), (ChannelChoiceNeeded, ValueError),
            (ImageLayoutError, ValueError), (KaggleCsvError, ValueError), (RLEError, ValueError), (PlotInputError, ValueError)]


@pytest.mark.parametrize("error, base", _library_input_errors(), ids=lambda c: c.__name__)
def test_library_input_errors_are_one_line_and_still_caught_by_their_base(capsys, error, base):
    @exit_on_user_error
    def tool():
        raise error("/data/gt.json: image id 3 has no 'file_name'")

    with pytest.raises(SystemExit) as exc:  # DatasetNotPreparedError is an OSError, yet not a disk error
        tool()
    assert exc.value.code == 2 and capsys.readouterr().err == "error: /data/gt.json: image id 3 has no 'file_name'\n"
    with pytest.raises(base, match="image id 3"):  # callers that catch ValueError / FileNotFoundError still do
        raise error("image id 3")


def test_a_prefix_names_the_tool_on_user_and_disk_errors(capsys):
    @exit_on_user_error(prefix="evaluate.py: error: ")
    def tool(error):
        raise error

    with pytest.raises(SystemExit) as exc:
        tool(UserError("--score-thresh must be in [0, 1] (a score/probability), got 1.5"))
    assert exc.value.code == 2
    assert capsys.readouterr().err == "evaluate.py: error: --score-thresh must be in [0, 1] (a score/probability), got 1.5\n"
    with pytest.raises(SystemExit) as exc:
        tool(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/summary.json"))
    assert exc.value.code == 2
    assert capsys.readouterr().err == (f"evaluate.py: error: /data/out/summary.json: {os.strerror(errno.ENOSPC)} "
                                       "(the disk is full: free space and run the same command again)\n")
    with pytest.raises(OSError, match="Input/output"):
        tool(OSError(errno.EIO, "Input/output error"))
