"""Image preprocessing stored with each model: colour constancy, resize, normalisation.

Shades of Gray colour constancy (Finlayson & Trezzi, "Shades of Gray and Colour
Constancy", CIC 2004) estimates the illuminant of each channel as the Minkowski p-norm
of its values, e_c = (mean(I_c ** p)) ** (1 / p), and rescales the channels so that the
estimate becomes grey: I'_c = I_c * |e| / (sqrt(3) * e_c). p = 6 is the usual choice for
dermoscopy (Barata et al., IEEE J-BHI 2015; ISIC challenge entries).

The web tier reads and checks a model's :class:`Preprocessing` when it registers one, so
this module imports no torch at module level: the methods that build tensors import
torch and torchvision when they are called, in the processes that run a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch
    from torchvision import transforms

DEFAULT_POWER = 6

# The values of torchvision's InterpolationMode (a test keeps them in step).
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "box", "hamming", "lanczos")

_LEVELS = np.arange(256, dtype=np.float64)


def illuminant(image: Image.Image | np.ndarray, p: float = DEFAULT_POWER) -> np.ndarray:
    """The per-channel Minkowski p-norm (R, G, B) of a uint8 RGB image, in 0..255 units.

    Computed from the 256-bin histogram of each channel, which is exact for uint8 data
    and avoids raising every pixel to the 6th power.
    """
    hist = _histograms(image)
    moment = hist @ (_LEVELS / 255.0) ** p / hist.sum(axis=1)
    return 255.0 * moment ** (1.0 / p)


def shades_of_gray(image: Image.Image | np.ndarray, p: float = DEFAULT_POWER):
    """Shades of Gray colour constancy; returns the same type (PIL RGB or uint8 HxWx3)."""
    e = illuminant(image, p)
    if not np.all(e > 0):
        return image  # a channel that is all black has no illuminant to correct
    gain = np.linalg.norm(e) / (np.sqrt(3.0) * e)
    luts = [np.clip(np.rint(_LEVELS * g), 0, 255).astype(np.uint8) for g in gain]
    if isinstance(image, Image.Image):
        return _to_rgb(image).point(np.concatenate(luts).tolist())
    array = _as_rgb_array(image)
    out = np.empty_like(array)
    for c in range(3):
        out[..., c] = luts[c][array[..., c]]
    return out


class ShadesOfGray:
    """Transform form of :func:`shades_of_gray` for PIL images."""

    def __init__(self, p: float = DEFAULT_POWER):
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return shades_of_gray(image, self.p)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


def _hwc_uint8_tensor(image: Image.Image) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(image, dtype=np.uint8))


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _as_rgb_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {array.dtype} {array.shape}")
    return array


def _histograms(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(_to_rgb(image).histogram(), dtype=np.float64).reshape(3, 256)
    array = _as_rgb_array(image)
    return np.stack([np.bincount(array[..., c].ravel(), minlength=256) for c in range(3)]).astype(
        np.float64
    )


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for one model; stored with its weights.

    ``input_size`` is the side of the square network input; ``interpolation`` is a
    torchvision ``InterpolationMode`` value ("bicubic", "bilinear", ...).
    """

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    colour_constancy: bool = True
    p: float = DEFAULT_POWER

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"{self.interpolation!r} is not a valid interpolation; "
                f"one of {', '.join(INTERPOLATIONS)}"
            )
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @classmethod
    def for_arch(cls, arch: str, *, img_size: int | None = None) -> Preprocessing:
        """The registered architecture's defaults, optionally at another input size."""
        from inference.archs import get_spec

        spec = get_spec(arch)
        return cls(
            input_size=img_size or spec.input_size,
            mean=spec.mean,
            std=spec.std,
            interpolation=spec.interpolation,
            colour_constancy=spec.colour_constancy,
        )

    def to_dict(self) -> dict:
        """JSON-serialisable form (tuples become lists)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys: {sorted(unknown)}")
        return cls(**data)

    def _prefix(self) -> list:
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        steps = [_to_rgb]
        if self.colour_constancy:
            steps.append(ShadesOfGray(self.p))
        steps.append(
            transforms.Resize(
                (self.input_size, self.input_size),
                interpolation=InterpolationMode(self.interpolation),
                antialias=True,
            )
        )
        return steps

    def _suffix(self) -> list:
        from torchvision import transforms

        return [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]

    def inference_transform(self) -> transforms.Compose:
        """PIL image -> float tensor (3, S, S): colour constancy, resize, normalise."""
        from torchvision import transforms

        return transforms.Compose([*self._prefix(), *self._suffix()])

    def pixel_transform(self) -> transforms.Compose:
        """PIL image -> uint8 tensor (S, S, 3): colour constancy and resize only.

        With :meth:`normalize_batch` this gives the same numbers as
        :meth:`inference_transform`, but the float work happens once per batch (on the
        GPU where there is one) and decoding threads move a quarter of the bytes.
        """
        from torchvision import transforms

        return transforms.Compose([*self._prefix(), _hwc_uint8_tensor])

    def normalize_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> normalised float (B, 3, S, S), in channels-last layout."""
        import torch

        x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def training_transform(self) -> transforms.Compose:
        """As for inference, plus rotation by -30..30 degrees and random flips (p = 0.5)."""
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        augment = [
            transforms.RandomRotation(30, interpolation=InterpolationMode.BILINEAR),
            transforms.RandomHorizontalFlip(0.5),
            transforms.RandomVerticalFlip(0.5),
        ]
        return transforms.Compose([*self._prefix(), *augment, *self._suffix()])
