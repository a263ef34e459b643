"""Files through Django's default storage, a local folder or an S3-compatible bucket.

Code that needs a file on this machine asks :func:`local_path` and falls back to the
storage's ``open`` where there is none (object storage); a folder of files written
elsewhere (a report) goes in with :func:`folder_upload` and out with
:func:`folder_delete`. Nothing here hands out a URL: files are served by the platform's
permission-checked views.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Sequence
from pathlib import Path

from django.core.files import File
from django.core.files.storage import Storage, default_storage


def local_path(name: str, *, storage: Storage | None = None) -> Path | None:
    """The path of ``name`` on this machine, or None where the storage has no paths
    (object storage). The file need not exist."""
    try:
        return Path((storage or default_storage).path(name))
    except NotImplementedError:
        return None


def stored_image(file) -> Path | io.BytesIO | None:
    """A stored file (a ``FieldFile``) as something Pillow opens: its local path where
    there is one, else its bytes read from the storage; None when the object is gone."""
    path = local_path(file.name, storage=file.storage)
    if path is not None:
        return path
    try:
        with file.storage.open(file.name, "rb") as handle:
            return io.BytesIO(handle.read())
    except FileNotFoundError:
        return None


def folder_upload(
    *, folder: str, paths: Sequence[Path], storage: Storage | None = None
) -> list[str]:
    """Store each local file of ``paths`` as ``<folder>/<its file name>``, replacing a
    file of that name (what an interrupted upload of the same folder left); returns the
    stored names. If one fails, those stored before it are deleted and the error is
    raised: the folder is complete or absent."""
    storage = storage or default_storage
    stored: list[str] = []
    try:
        for path in paths:
            name = f"{folder}/{path.name}"
            storage.delete(name)
            with path.open("rb") as handle:
                saved = storage.save(name, File(handle, name=path.name))
            stored.append(saved)
            if saved != name:
                raise OSError(f"the storage stored {name} as {saved}")
    except BaseException:
        for name in stored:
            with contextlib.suppress(Exception):
                storage.delete(name)
        raise
    return stored


def folder_delete(folder: str, *, storage: Storage | None = None) -> None:
    """Delete every file under ``folder``, and the folder itself where it is local."""
    storage = storage or default_storage
    path = local_path(folder, storage=storage)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        return
    folders, files = storage.listdir(folder)
    for name in files:
        storage.delete(f"{folder}/{name}")
    for sub in folders:
        folder_delete(f"{folder}/{sub}", storage=storage)
