"""Read-only access to the files of the source: a zip or a folder."""
from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from pathlib import Path
from typing import List, Optional

from ...utils.files import sha256_of_file
from .errors import DatasetError

__all__ = ["Source"]


class Source:
    """The files of a zip or a folder, by '/'-separated relative names."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self.kind = "folder"
        elif path.is_file():
            if not zipfile.is_zipfile(path):
                raise DatasetError(f"{path}: neither a folder nor a zip file")
            self.kind = "zip"
        else:
            raise DatasetError(f"{path}: no such file or folder")
        self._zip: Optional[zipfile.ZipFile] = None

    def __getstate__(self) -> dict:
        # A ZipFile's file handle must not be shared between processes.
        return {"path": self.path, "kind": self.kind, "_zip": None}

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetError(f"{self.path}: cannot open the zip: {e}") from None
        return self._zip

    def close(self) -> None:
        """Close the zip's file handle (reopened on the next read)."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def names(self) -> List[str]:
        """Relative names of every file, in a stable order."""
        if self.kind == "zip":
            return [i.filename for i in self._zipfile().infolist() if not i.is_dir()]
        names = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.path).as_posix()
            names.extend(f if rel == "." else f"{rel}/{f}" for f in sorted(filenames))
        return names

    def read(self, name: str) -> bytes:
        """The bytes of file ``name``; DatasetError naming it when unreadable."""
        try:
            if self.kind == "zip":
                return self._zipfile().read(name)
            return (self.path / name).read_bytes()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
            raise DatasetError(f"{self.display(name)}: cannot read: {e}") from None

    def display(self, name: str) -> str:
        """How messages and the manifest name file ``name``."""
        return f"{self.path}:{name}" if self.kind == "zip" else str(self.path / name)

    def sha256(self) -> str:
        """Checksum of the zip's bytes, or of a folder's relative names and contents."""
        if self.kind == "zip":
            return sha256_of_file(self.path)
        h = hashlib.sha256()
        for name in self.names():
            h.update(name.encode("utf-8") + b"\0")
            h.update(hashlib.sha256((self.path / name).read_bytes()).digest())
        return h.hexdigest()
