"""Running a model over images: probabilities, restricted top-1, embeddings, Grad-CAM.

A reader study asks for one of a subset of the model's classes (8 of 14 in Zhu et al.
2021), so the model's answer is the argmax of its logits over those classes only, and
its probabilities over them are the softmax of the restricted logits.

Decoding and preprocessing run in a thread pool that works on the next batches while
the current one goes through the network (PIL decoding, resizing and torch release the
GIL), so the whole path keeps up with a bare forward pass. The plain forward runs under
``torch.inference_mode()``; with Grad-CAM the same single forward pass gives the maps
too (:func:`inference.gradcam.forward_with_cam`: a gradient down to the CAM layer only).
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from inference.gradcam import forward_with_cam
from inference.nets import Net
from inference.preprocessing import Preprocessing

ImageSource = Image.Image | str | os.PathLike | bytes | BinaryIO


def restrict_to_choices(
    logits: np.ndarray | torch.Tensor | Sequence[float],
    classes: Sequence[str],
    choices: Sequence[str],
) -> tuple[str, dict[str, float]]:
    """Top-1 label among ``choices`` and the softmax of the logits over ``choices`` only.

    ``logits`` is one image's vector over ``classes``. The probabilities are returned in
    the order of ``choices``; ties go to the earlier choice.
    """
    logits = np.asarray(
        logits.detach().cpu() if isinstance(logits, torch.Tensor) else logits, dtype=np.float64
    )
    if logits.shape != (len(classes),):
        raise ValueError(f"expected {len(classes)} logits, got shape {logits.shape}")
    index = {label: i for i, label in enumerate(classes)}
    unknown = [c for c in choices if c not in index]
    if unknown or not choices:
        raise ValueError(f"choices must be a non-empty subset of the classes; unknown: {unknown}")
    restricted = logits[[index[c] for c in choices]]
    probs = _softmax(restricted)
    return choices[int(np.argmax(restricted))], dict(zip(choices, probs.tolist(), strict=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class ImageReadError(ValueError):
    """An image could not be decoded; ``index`` is its position in the input."""

    def __init__(self, index: int, source, cause: Exception):
        name = source if isinstance(source, str | os.PathLike) else type(source).__name__
        super().__init__(f"image #{index} ({name}) could not be read: {cause}")
        self.index = index


@dataclass(frozen=True)
class ImagePrediction:
    """One image's result.

    ``probabilities``: softmax of the logits over all model classes, in class order.
    ``top1`` and ``choice_probabilities``: restricted to the choices (all classes when
    none were given). ``embedding``: the pooled features before the classifier.
    ``cam``: with Grad-CAM, the float32 (S, S) map in [0, 1] that explains ``top1``.
    """

    logits: np.ndarray
    probabilities: dict[str, float]
    top1: str
    choice_probabilities: dict[str, float]
    embedding: np.ndarray
    pixels: np.ndarray | None = None  # uint8 (S, S, 3) network input, with keep_pixels
    cam: np.ndarray | None = None


def load_image(source: ImageSource, *, draft_size: int | None = None) -> Image.Image:
    """Decode an image source to an RGB PIL image (paths, bytes, file objects or PIL).

    ``draft_size``: let the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding,
    never below ``draft_size`` on either side (several times faster for large photos;
    the pixels differ slightly from a full decode followed by the resize).
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, bytes | bytearray):
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(Path(source) if isinstance(source, str | os.PathLike) else source)
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def default_workers(device: torch.device | None = None) -> int:
    """Decoding threads that overlap with the forward pass.

    On a GPU the CPU is free while the network runs: all cores but one, at most 8. On the
    CPU the forward pass already uses ``torch.get_num_threads()`` cores; a decoding
    thread on top of them makes every parallel layer wait for the core it steals (on 2
    cores that cost 15-20% of the throughput, measured with bench/inference.py), so
    decoding runs inline between batches unless cores are left over.
    """
    cores = os.cpu_count() or 2
    if device is not None and device.type != "cpu":
        return max(1, min(8, cores - 1))
    return max(0, min(8, cores - torch.get_num_threads()))


class ImageListDataset(torch.utils.data.Dataset):
    """Images for a torch ``DataLoader`` (multi-process decoding): item i -> tensor."""

    def __init__(self, sources: Sequence[ImageSource], preprocessing: Preprocessing):
        self.sources = sources
        self.transform = preprocessing.inference_transform()

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(load_image(self.sources[i]))


def iter_batches(
    sources: Iterable[ImageSource],
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int,
    num_workers: int | None = None,
    prefetch_batches: int = 2,
    pin_memory: bool = False,
    draft_size: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield stacked batches of transformed images, in order.

    With ``num_workers > 0`` a thread pool decodes and transforms up to
    ``prefetch_batches`` batches ahead of the consumer; with 0 it works inline. The
    default is :func:`default_workers`. ``draft_size`` is passed to :func:`load_image`.
    """
    for chunk in _prepared_chunks(
        sources,
        transform,
        batch_size=batch_size,
        num_workers=num_workers,
        prefetch_batches=prefetch_batches,
        draft_size=draft_size,
    ):
        for item in chunk:
            if isinstance(item, ImageReadError):
                raise item
        yield _collate(chunk, pin_memory)


def _collate(tensors: list[torch.Tensor], pin_memory: bool) -> torch.Tensor:
    batch = torch.stack(tensors)
    return batch.pin_memory() if pin_memory else batch


def _prepared_chunks(
    sources: Iterable[ImageSource],
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int,
    num_workers: int | None,
    prefetch_batches: int,
    draft_size: int | None,
) -> Iterator[list[torch.Tensor | ImageReadError]]:
    """Lists of up to ``batch_size`` transformed images, in order; an image that cannot
    be decoded is an :class:`ImageReadError` at its position (the caller decides)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if num_workers is None:
        num_workers = default_workers()

    def prepare(item: tuple[int, ImageSource]) -> torch.Tensor | ImageReadError:
        index, source = item
        try:
            return transform(load_image(source, draft_size=draft_size))
        except (OSError, ValueError) as exc:  # PIL raises these for unreadable images
            error = ImageReadError(index, source, exc)
            error.__cause__ = exc
            return error

    items = enumerate(sources)
    if num_workers == 0:
        while chunk := [prepare(item) for _, item in zip(range(batch_size), items, strict=False)]:
            yield chunk
        return

    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        limit = (prefetch_batches + 1) * batch_size

        def fill():
            while len(pending) < limit:
                try:
                    item = next(items)
                except StopIteration:
                    return
                pending.append(pool.submit(prepare, item))

        fill()
        while pending:
            futures = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            fill()
            yield [f.result() for f in futures]


def predict_images(
    model: Net,
    preprocessing: Preprocessing,
    images: Iterable[ImageSource],
    *,
    classes: Sequence[str],
    choices: Sequence[str] | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    jpeg_draft: bool = False,
    device: str | torch.device | None = None,
    with_gradcam: bool = False,
) -> list[ImagePrediction]:
    """Predict each image (PIL images, paths, bytes or file objects), in input order.

    Puts the model in eval mode and channels-last memory format on ``device`` (default:
    the device its weights are on). ``jpeg_draft`` decodes JPEGs at reduced scale (see
    :func:`load_image`); off by default so that results match a full decode.
    ``with_gradcam``: see :func:`iter_predictions`.
    """
    return list(
        iter_predictions(
            model,
            preprocessing,
            images,
            classes=classes,
            choices=choices,
            batch_size=batch_size,
            num_workers=num_workers,
            jpeg_draft=jpeg_draft,
            device=device,
            with_gradcam=with_gradcam,
        )
    )


def iter_predictions(
    model: Net,
    preprocessing: Preprocessing,
    images: Iterable[ImageSource],
    *,
    classes: Sequence[str],
    choices: Sequence[str] | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    jpeg_draft: bool = False,
    device: str | torch.device | None = None,
    on_error: str = "raise",
    keep_pixels: bool = False,
    with_gradcam: bool = False,
) -> Iterator[ImagePrediction | ImageReadError]:
    """As :func:`predict_images`, one result at a time (for long lists).

    ``on_error="yield"``: an image that cannot be decoded yields its
    :class:`ImageReadError` at its position and the others go on ("raise", the default,
    raises it). ``keep_pixels``: each prediction carries the uint8 (S, S, 3) network
    input before normalisation (for the Grad-CAM overlay without decoding again).
    ``with_gradcam``: each prediction carries the Grad-CAM map of its ``top1``, from the
    same forward pass. Results are yielded outside ``torch.inference_mode()``, so the
    caller may use autograd between them.
    """
    if on_error not in ("raise", "yield"):
        raise ValueError(f"on_error must be 'raise' or 'yield', not {on_error!r}")
    classes = list(classes)
    if model.num_classes != len(classes):
        raise ValueError(f"model has {model.num_classes} outputs but {len(classes)} classes given")
    choices = list(choices) if choices is not None else classes
    restrict_to_choices(np.zeros(len(classes)), classes, choices)  # validate before the work
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval().to(device, memory_format=torch.channels_last)
    chunks = _prepared_chunks(
        images,
        preprocessing.pixel_transform(),
        batch_size=batch_size,
        num_workers=default_workers(device) if num_workers is None else num_workers,
        prefetch_batches=2,
        draft_size=preprocessing.input_size if jpeg_draft else None,
    )
    for chunk in chunks:
        failures = [item for item in chunk if isinstance(item, ImageReadError)]
        if failures and on_error == "raise":
            raise failures[0]
        tensors = [item for item in chunk if not isinstance(item, ImageReadError)]
        results = iter(
            _predict_batch(
                model,
                preprocessing,
                tensors,
                classes,
                choices,
                device,
                keep_pixels=keep_pixels,
                with_gradcam=with_gradcam,
            )
            if tensors
            else []
        )
        # Yielded outside inference_mode: a `with` block in a generator stays active
        # in the consumer between yields.
        for item in chunk:
            yield item if isinstance(item, ImageReadError) else next(results)


def _predict_batch(
    model: Net,
    preprocessing: Preprocessing,
    tensors: list[torch.Tensor],
    classes: list[str],
    choices: list[str],
    device: torch.device,
    *,
    keep_pixels: bool,
    with_gradcam: bool,
) -> list[ImagePrediction]:
    pixels = _collate(tensors, device.type == "cuda")
    if with_gradcam:
        with torch.no_grad():
            x = preprocessing.normalize_batch(pixels.to(device, non_blocking=True))
        index = {label: i for i, label in enumerate(classes)}
        out, cams, _ = forward_with_cam(model, x, among=[index[c] for c in choices])
        cams = cams.cpu().numpy()
    else:
        with torch.inference_mode():
            x = preprocessing.normalize_batch(pixels.to(device, non_blocking=True))
            out = model.forward_all(x)
        cams = [None] * len(tensors)
    logits = out.logits.float().cpu().numpy()
    embeddings = out.embedding.float().cpu().numpy()
    probs = _softmax(logits.astype(np.float64))
    kept = pixels.numpy() if keep_pixels else [None] * len(tensors)
    results = []
    for row, p, emb, px, cam in zip(logits, probs, embeddings, kept, cams, strict=True):
        top1, choice_probs = restrict_to_choices(row, classes, choices)
        results.append(
            ImagePrediction(
                logits=row.copy(),
                probabilities=dict(zip(classes, p.tolist(), strict=True)),
                top1=top1,
                choice_probabilities=choice_probs,
                embedding=emb.copy(),
                pixels=px,
                cam=cam,
            )
        )
    return results
