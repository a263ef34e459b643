"""Checking imported images and making their web-size derivatives.

Every image is checked before anything is written: size in bytes, the decoded format
(not the file name's suffix), the pixel count read from the header before any pixel is
decoded (so a decompression bomb is refused without being expanded), and a full decode.

The pixel limit is the caller's (``READERSTUDY_MAX_IMAGE_PIXELS``), not Pillow's global
default: while an image is checked or resized, Pillow's own bomb check is set to the same
limit, so an image within the configured limit is never refused by Pillow, and one over it
is reported with the configured number.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif"}
WEB_MAX_SIDE = 1600
THUMB_MAX_SIDE = 256


class ImageRejected(ValueError):
    """The bytes are not an acceptable case image; the message says why."""


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit set to ``max_pixels`` while the block runs.

    Pillow keeps the limit in a module global: the lock stops two threads from restoring
    each other's value midway. Its warning (between 1 and 2 times the limit) is silenced,
    since ``check_image`` compares the header's pixel count with the limit itself.
    """
    if max_pixels is None:
        yield
        return
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str  # JPEG, PNG or TIFF
    width: int
    height: int
    sha256: str

    @property
    def suffix(self) -> str:
        return ALLOWED_FORMATS[self.format]


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Validate image bytes; raise ``ImageRejected`` with a reason a person can act on."""
    if not data:
        raise ImageRejected("the file is empty")
    if len(data) > max_bytes:
        raise ImageRejected(f"the file has {len(data):,} bytes; the limit is {max_bytes:,}")
    with pixel_limit(max_pixels):
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format
                width, height = probe.size
        except Image.DecompressionBombError:
            # Pillow refuses (without decoding) above twice the limit set for it.
            raise ImageRejected(
                f"the image declares more pixels than the limit of {max_pixels:,} "
                "(a decompression bomb or an oversized scan)"
            ) from None
        except (UnidentifiedImageError, OSError):
            raise ImageRejected("not a readable image (JPEG, PNG or TIFF expected)") from None
        if fmt not in ALLOWED_FORMATS:
            raise ImageRejected(f"format {fmt} is not accepted; use JPEG, PNG or TIFF")
        if width * height > max_pixels:
            raise ImageRejected(
                f"{width} x {height} = {width * height:,} pixels exceeds the limit of "
                f"{max_pixels:,} (a decompression bomb or an oversized scan)"
            )
        try:
            with Image.open(io.BytesIO(data)) as full:
                full.load()
        except Exception as exc:  # truncated or corrupt data raises many kinds of errors
            raise ImageRejected(f"the image data is damaged ({type(exc).__name__})") from None
    return CheckedImage(
        data=data,
        format=fmt,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def derivative_jpeg(
    data: bytes, *, max_side: int, quality: int = 88, max_pixels: int | None = None
) -> bytes:
    """A JPEG at most ``max_side`` pixels on its longer side, EXIF-rotated, sRGB.

    ``max_pixels``: the limit the image was checked against (Pillow's default otherwise).
    """
    with pixel_limit(max_pixels), Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        # No EXIF, comment or other metadata is carried over into what readers
        # download: Pillow writes info["comment"] back out on save unless it is gone.
        image.info.clear()
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality, optimize=True)
        return out.getvalue()
