"""maskrcnnpp.utils.files: the one write-then-rename of every output file, and its file mode."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from maskrcnnpp.utils.files import atomic_path, commit_partial_dir, default_file_mode, partial_dir, write_text


@pytest.fixture()
def umask():
    """Set a umask for one test and restore the process's own afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_the_file_gets_what_open_would_give_under_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert default_file_mode() == mode
    with atomic_path(str(tmp_path / "out.csv")) as tmp:
        with open(tmp, "w") as f:
            f.write("a")
    with open(tmp_path / "plain.csv", "w") as f:
        f.write("a")
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode) == mode


def test_a_failed_write_leaves_the_earlier_file_and_no_partial(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("earlier")
    with pytest.raises(OSError, match="No space left"):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_the_folder_is_created_and_the_suffix_kept(tmp_path):
    with atomic_path(str(tmp_path / "a" / "b" / "labels.tif")) as tmp:
        assert tmp.endswith(".tif") and os.path.dirname(tmp) == str(tmp_path / "a" / "b")
        open(tmp, "wb").close()
    assert (tmp_path / "a" / "b" / "labels.tif").is_file()


def test_write_text_writes_the_exact_utf8_bytes_and_keeps_the_earlier_file_on_failure(tmp_path):
    target = tmp_path / "table.md"
    write_text(str(target), "| a × b |\n|---|\n")
    assert target.read_bytes() == "| a × b |\n|---|\n".encode("utf-8")
    with pytest.raises(TypeError):
        write_text(str(target), None)  # type: ignore[arg-type]
    assert target.read_bytes() == "| a × b |\n|---|\n".encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def built(out):
    tmp = partial_dir(out)
    tmp.mkdir(parents=True)
    (tmp / "data.txt").write_text("new")
    return tmp


def test_commit_partial_dir_renames_into_place_or_an_empty_folder(tmp_path):
    out = tmp_path / "set"
    assert commit_partial_dir(built(out), out, lambda folder: False) is True
    assert (out / "data.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert commit_partial_dir(built(empty), empty, lambda folder: False) is True
    assert (empty / "data.txt").read_text() == "new"


def test_commit_partial_dir_when_another_process_got_there_first(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "data.txt").write_text("theirs")
    seen = []
    tmp = built(out)
    assert commit_partial_dir(tmp, out, lambda folder: seen.append(folder) or True) is False  # the same set
    assert seen == [out] and not tmp.exists() and (out / "data.txt").read_text() == "theirs"

    tmp = built(out)
    with pytest.raises(OSError):  # something else there, no conflict error given: the rename's own
        commit_partial_dir(tmp, out, lambda folder: False)
    with pytest.raises(LookupError, match="^holds something else$"):
        commit_partial_dir(tmp, out, lambda folder: False, lambda: LookupError("holds something else"))
    assert tmp.is_dir() and (out / "data.txt").read_text() == "theirs"  # the caller removes its own tmp
