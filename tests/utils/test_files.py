"""maskrcnnpp.utils.files: the one write-then-rename of every output file, and its file mode."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from maskrcnnpp.utils.files import atomic_path, default_file_mode, write_text


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
