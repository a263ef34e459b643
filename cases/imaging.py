"""Checking imported images and making their web-size derivatives.

Every image is checked before anything is written: size in bytes, the decoded format
(not the file name's suffix), the pixel count read from the header before any pixel is
decoded (so a decompression bomb is refused without being expanded), and a full decode.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif"}
WEB_MAX_SIDE = 1600
THUMB_MAX_SIDE = 256


class ImageRejected(ValueError):
    """The bytes are not an acceptable case image; the message says why."""


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
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
    except Image.DecompressionBombError:
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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
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


def derivative_jpeg(data: bytes, *, max_side: int, quality: int = 88) -> bytes:
    """A JPEG at most ``max_side`` pixels on its longer side, EXIF-rotated, sRGB."""
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        # No EXIF or other metadata is carried over into what readers download.
        image.save(out, format="JPEG", quality=quality, optimize=True)
        return out.getvalue()
