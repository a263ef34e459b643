"""Read a case bundle (a folder or a .zip holding ``cases.csv`` and the images) safely.

Member names are checked before anything is read: an absolute path, a ``..`` component
or (in a folder) a symlink leading outside the bundle is refused, so an archive cannot
make the importer read or write outside where it was pointed.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

MANIFEST = "cases.csv"
STUDY_FILE = "study.json"


class BundleError(ValueError):
    """The bundle as a whole cannot be read; the message says why."""


class Bundle(Protocol):
    def exists(self, name: str) -> bool: ...
    def read(self, name: str) -> bytes: ...
    def size(self, name: str) -> int: ...


def unsafe_member_reason(name: str) -> str | None:
    """Why ``name`` may not be used as a path inside a bundle, or None when it is fine."""
    if not name:
        return "an empty file name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"{name!r} is an absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return f"{name!r} contains '..'"
    return None


class FolderBundle:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, name: str) -> Path:
        reason = unsafe_member_reason(name)
        if reason:
            raise BundleError(reason)
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise BundleError(f"{name!r} leads outside the bundle folder")
        return path

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def read(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size


class ZipBundle:
    def __init__(self, archive: zipfile.ZipFile, *, max_total_bytes: int) -> None:
        problems = []
        total = 0
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            reason = unsafe_member_reason(info.filename)
            if reason:
                problems.append(f"zip member {reason}")
                continue
            total += info.file_size
            if not info.is_dir():
                self._members[info.filename.replace("\\", "/")] = info
        if problems:
            raise BundleError("; ".join(problems))
        if total > max_total_bytes:
            raise BundleError(
                f"the archive expands to {total:,} bytes; the limit is {max_total_bytes:,}"
            )
        self.archive = archive
        # A zip made by "compress this folder" holds everything under one top folder.
        self.prefix = ""
        if MANIFEST not in self._members:
            candidates = [n for n in self._members if PurePosixPath(n).name == MANIFEST]
            if len(candidates) == 1 and len(PurePosixPath(candidates[0]).parts) == 2:
                self.prefix = str(PurePosixPath(candidates[0]).parent) + "/"

    def _info(self, name: str) -> zipfile.ZipInfo | None:
        reason = unsafe_member_reason(name)
        if reason:
            raise BundleError(reason)
        return self._members.get(self.prefix + name.replace("\\", "/"))

    def exists(self, name: str) -> bool:
        return self._info(name) is not None

    def read(self, name: str) -> bytes:
        info = self._info(name)
        if info is None:
            raise FileNotFoundError(name)
        return self.archive.read(info)

    def size(self, name: str) -> int:
        info = self._info(name)
        if info is None:
            raise FileNotFoundError(name)
        return info.file_size


@contextlib.contextmanager
def open_bundle(source: Path | str | IO[bytes], *, max_total_bytes: int) -> Iterator[Bundle]:
    """Open a folder, a .zip path or an uploaded zip file object as a bundle."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            yield FolderBundle(path)
            return
        if not path.exists():
            raise BundleError(f"{path} does not exist")
        if not zipfile.is_zipfile(path):
            raise BundleError(f"{path} is neither a folder nor a .zip archive")
        with zipfile.ZipFile(path) as archive:
            yield ZipBundle(archive, max_total_bytes=max_total_bytes)
        return
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise BundleError("the upload is not a .zip archive") from None
    with archive:
        yield ZipBundle(archive, max_total_bytes=max_total_bytes)
