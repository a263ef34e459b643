"""Read a case bundle (a folder or a .zip holding ``cases.csv`` and the images) safely.

Member names are checked before anything is read: an absolute path, a ``..`` component
or (in a folder) a symlink leading outside the bundle is refused, so an archive cannot
make the importer read or write outside where it was pointed. A file that cannot be read
(no permission, a damaged or encrypted zip member) raises ``MemberUnreadable``, which the
importer reports for the row that names it.
"""

from __future__ import annotations

import contextlib
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

MANIFEST = "cases.csv"
STUDY_FILE = "study.json"


class BundleError(ValueError):
    """The bundle as a whole cannot be read; the message says why."""


class MemberUnreadable(BundleError):
    """One file of the bundle cannot be read; the message says why, without the name."""


# What zipfile raises for a member whose stored bytes are damaged: a CRC or header
# mismatch (BadZipFile), a corrupt deflate, bzip2 or lzma stream, or data that ends early.
_DAMAGED_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError)


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
        try:
            path = (self.root / name).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before 3.13
            raise MemberUnreadable(f"the path cannot be resolved ({exc})") from None
        if not path.is_relative_to(self.root):
            raise BundleError(f"{name!r} leads outside the bundle folder")
        return path

    def exists(self, name: str) -> bool:
        path = self._path(name)
        try:
            return path.is_file()
        except OSError as exc:
            raise MemberUnreadable(_os_reason(exc)) from None

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except OSError as exc:
            raise MemberUnreadable(_os_reason(exc)) from None

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except OSError as exc:
            raise MemberUnreadable(_os_reason(exc)) from None


def _os_reason(exc: OSError) -> str:
    return f"the file cannot be read ({exc.strerror or type(exc).__name__})"


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
        if info.flag_bits & 0x1:
            raise MemberUnreadable(
                "the zip member is encrypted; pack the bundle without a password"
            )
        try:
            return self.archive.read(info)
        except (NotImplementedError, RuntimeError) as exc:  # a method zipfile lacks
            raise MemberUnreadable(f"the zip member cannot be unpacked ({exc})") from None
        except _DAMAGED_MEMBER_ERRORS as exc:
            raise MemberUnreadable(
                f"the zip member is damaged ({exc or type(exc).__name__})"
            ) from None

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
