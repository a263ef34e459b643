"""Synthetic demo images (pure numpy + Pillow, no Django).

The demo study is shaped like the reference study (Zhu et al. 2021): eight diagnoses
(:data:`DEMO_CHOICES`), 25 cases each, every case one clinical-style photo and one
dermoscopic-style image. None of this is real patient data: every image is drawn from
noise fields, cellular (Worley) patterns and a few PIL primitives, and carries a small
"SYNTHETIC" watermark in its bottom-right corner.

:func:`make_case_images` returns ``(clinical, dermoscopic)`` RGB images for one case of a
class. The look is class-dependent (colour, border sharpness, texture: pigment network
and globules for MN, cerebriform fissures and milia-like cysts for SK, pearly pink with
arborizing vessels for BCC, ...) with per-case variation (skin tone from a
Fitzpatrick-like range, lesion size, position, rotation, shape, exposure, hairs, noise).
Everything comes from the ``rng`` passed in, so a given generator state always gives the
same pixels (on one platform: the float32 noise fields may differ in the last bit between
CPUs). The per-case parameters (skin tone, lesion shape and size) are drawn first, so the
two images of a case agree with each other. A case takes about 80 ms on one core;
everything is vectorised numpy or PIL drawing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "CLINICAL_SIZE",
    "DEMO_CHOICES",
    "DEMO_NAMES",
    "DERMOSCOPIC_SIZE",
    "THUMB_SIDE",
    "WATERMARK_TEXT",
    "add_watermark",
    "make_case_images",
]

DEMO_CHOICES = ("MN", "SK", "BCC", "EAD", "SD", "Pso", "VW", "Rosa")
DEMO_NAMES = {
    "MN": "melanocytic nevus",
    "SK": "seborrheic keratosis",
    "BCC": "basal cell carcinoma",
    "EAD": "eczema and dermatitis",
    "SD": "seborrheic dermatitis",
    "Pso": "psoriasis",
    "VW": "viral warts",
    "Rosa": "rosacea",
}
CLINICAL_SIZE = (640, 480)  # (width, height)
DERMOSCOPIC_SIZE = (600, 600)
WATERMARK_TEXT = "SYNTHETIC"
# The admin's thumbnails shrink the longer side to this
# (cases.importing.imaging.THUMB_MAX_SIDE, repeated because this module imports nothing
# of the project); the watermark's font is _THUMB_FONT_PX there, the smallest size that
# stays legible.
THUMB_SIDE = 256
_THUMB_FONT_PX = 11

# Fitzpatrick-like skin tones I..VI (linear-ish RGB in [0, 1]).
_SKIN_TONES = np.array(
    [
        (0.96, 0.85, 0.78),
        (0.92, 0.77, 0.67),
        (0.85, 0.66, 0.53),
        (0.73, 0.53, 0.39),
        (0.54, 0.37, 0.26),
        (0.35, 0.23, 0.17),
    ],
    dtype=np.float32,
)

Color = tuple[float, float, float]


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return ThreadpoolController()


def _single_threaded_blas():
    """The noise fields are tiny matrix products; BLAS threads only hurt them (badly so
    on a busy machine), so generation runs with one BLAS thread where threadpoolctl is
    available."""
    controller = _blas_controller()
    return nullcontext() if controller is None else controller.limit(limits=1, user_api="blas")


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _resize(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bicubic resize of a 2-D float array."""
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))
    return np.array(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


@lru_cache(maxsize=64)
def _interp_matrix(n: int, cell: float) -> np.ndarray:
    """(n, g) Catmull-Rom interpolation from a lattice of spacing ``cell`` to ``n`` pixels."""
    t = (np.arange(n) + 0.5) / cell + 1.0  # lattice coordinates, one knot of margin
    i = np.floor(t).astype(np.intp)
    f = t - i
    weights = (
        (-(f**3) + 2 * f**2 - f) / 2,
        (3 * f**3 - 5 * f**2 + 2) / 2,
        (-3 * f**3 + 4 * f**2 + f) / 2,
        (f**3 - f**2) / 2,
    )
    m = np.zeros((n, int(i.max()) + 3), np.float32)
    rows = np.arange(n)
    for k, wk in enumerate(weights):
        m[rows, i + k - 1] += wk
    m.flags.writeable = False
    return m


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in about [0, 1] with features ``cell`` pixels across."""
    if cell < 8:  # fine noise: PIL's resampler beats the dense matrix products
        gh, gw = math.ceil(h / cell) + 1, math.ceil(w / cell) + 1
        return _resize(rng.random((gh, gw), dtype=np.float32), w, h)
    my, mx = _interp_matrix(h, cell), _interp_matrix(w, cell)
    lattice = rng.random((my.shape[1], mx.shape[1]), dtype=np.float32)
    return my @ lattice @ mx.T


def _fbm(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 2) -> np.ndarray:
    """Fractal noise, standardised to mean 0 and standard deviation 1."""
    total = np.zeros((h, w), np.float32)
    amp = 1.0
    for i in range(octaves):
        total += amp * _noise(rng, h, w, max(1.5, cell / 2**i))
        amp *= 0.5
    sample = total[::7, ::7]  # statistics from a subsample: plenty, and much cheaper
    total -= sample.mean()
    total /= sample.std() + 1e-6
    return total


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1`` (``e0 > e1`` gives a falling step)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _inside(d: np.ndarray, soft: float) -> np.ndarray:
    """1 inside a lesion (normalised distance ``d`` < 1), 0 outside, ``soft`` wide edge."""
    return _smoothstep(1.0 + soft / 2, 1.0 - soft / 2, d)


def _blend(img: np.ndarray, color, alpha: np.ndarray) -> None:
    """In place: ``img = img * (1 - alpha) + color * alpha`` (channel-first ``img``).

    Only the bounding box where ``alpha`` is non-negligible is touched.
    """
    rows = np.flatnonzero(alpha.max(axis=1) > 1e-3)
    if rows.size == 0:
        return
    cols = np.flatnonzero(alpha.max(axis=0) > 1e-3)
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    color = np.asarray(color, np.float32)
    color = color[:, None, None] if color.ndim == 1 else color[(slice(None), *box)]
    sub = img[(slice(None), *box)]
    sub += (color - sub) * alpha[box]


def _jitter(rng: np.random.Generator, color: Color, amount: float = 0.04, light: float = 0.0):
    """``color`` with per-channel (hue) jitter ``amount`` and brightness jitter ``light``."""
    c = np.asarray(color, np.float32) * (1.0 + amount * rng.standard_normal(3))
    c *= 1.0 + light * rng.uniform(-1.0, 1.0)
    return np.clip(c, 0.0, 1.0).astype(np.float32)


def _mask(h: int, w: int, draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0):
    """Draw with PIL on an "L" canvas and return it as a float mask in [0, 1]."""
    im = Image.new("L", (w, h), 0)
    draw(ImageDraw.Draw(im))
    bbox = im.getbbox()
    if bbox is None:
        return np.zeros((h, w), np.float32)
    if blur > 0:  # blur only the part that has something in it
        pad = math.ceil(3 * blur) + 1
        box = (
            max(0, bbox[0] - pad),
            max(0, bbox[1] - pad),
            min(w, bbox[2] + pad),
            min(h, bbox[3] + pad),
        )
        im.paste(im.crop(box).filter(ImageFilter.GaussianBlur(blur)), box[:2])
    return np.asarray(im, dtype=np.float32) * np.float32(1 / 255)


def _dots(h, w, xs, ys, rs, blur=0.0, values=None) -> np.ndarray:
    def draw(d):
        for i, (x, y, r) in enumerate(zip(xs, ys, rs, strict=True)):
            fill = 255 if values is None else int(values[i])
            d.ellipse([x - r, y - r, x + r, y + r], fill=fill)

    return _mask(h, w, draw, blur)


def _polylines(h, w, lines, widths, blur=0.0) -> np.ndarray:
    def draw(d):
        for pts, width in zip(lines, widths, strict=True):
            d.line(
                [(float(x), float(y)) for x, y in pts], fill=255, width=int(width), joint="curve"
            )

    return _mask(h, w, draw, blur)


def _curvy_line(rng, x0, y0, angle, length, n=8, bend=0.35) -> list[tuple[float, float]]:
    pts = [(x0, y0)]
    step = length / n
    for _ in range(n):
        angle += bend * rng.standard_normal()
        x0 += step * math.cos(angle)
        y0 += step * math.sin(angle)
        pts.append((x0, y0))
    return pts


def _points_in_disc(rng, cx, cy, radius, n):
    r = radius * np.sqrt(rng.random(n))
    t = rng.random(n) * 2 * np.pi
    return cx + r * np.cos(t), cy + r * np.sin(t)


def _worley(rng, h: int, w: int, cell: float, jitter: float = 0.9, warp: float = 0.0):
    """Cellular noise: distance to the nearest and second-nearest feature point.

    Feature points sit on a jittered grid of spacing ``cell``; computed at half (third, for
    big cells) resolution and upsampled. Returns ``(f1, f2, cell_value)`` where ``cell_value`` is a
    uniform random number per cell (to switch features on and off per cell).
    """
    scale = 3 if cell >= 40 else 2
    sh, sw = math.ceil(h / scale), math.ceil(w / scale)
    c = cell / scale
    gh, gw = math.ceil(sh / c) + 4, math.ceil(sw / c) + 4
    iy, ix = np.mgrid[0:gh, 0:gw].astype(np.float32)
    py = ((iy - 2 + 0.5 + jitter * (rng.random((gh, gw), dtype=np.float32) - 0.5)) * c).ravel()
    px = ((ix - 2 + 0.5 + jitter * (rng.random((gh, gw), dtype=np.float32) - 0.5)) * c).ravel()
    values = rng.random(gh * gw, dtype=np.float32)
    yy, xx = _grid(sh, sw)
    if warp:
        yy = yy + warp / scale * _fbm(rng, sh, sw, cell * 1.5 / scale, 2)
        xx = xx + warp / scale * _fbm(rng, sh, sw, cell * 1.5 / scale, 2)
    ci = np.clip(np.floor(yy / c).astype(np.int32) + 2, 1, gh - 2)
    cj = np.clip(np.floor(xx / c).astype(np.int32) + 2, 1, gw - 2)
    base = ci * gw + cj
    f1 = np.full((sh, sw), np.inf, np.float32)
    f2 = np.full((sh, sw), np.inf, np.float32)
    id1 = base.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            idx = base + (di * gw + dj)
            dist = np.hypot(yy - py[idx], xx - px[idx])
            closer = dist < f1
            f2 = np.where(closer, f1, np.minimum(f2, dist))
            id1 = np.where(closer, idx, id1)
            f1 = np.where(closer, dist, f1)
    val = values[id1]
    val_up = np.asarray(
        Image.fromarray(val).resize((w, h), Image.Resampling.NEAREST), dtype=np.float32
    )
    return _resize(f1 * scale, w, h), _resize(f2 * scale, w, h), val_up


# --------------------------------------------------------------------------- case geometry


@dataclass(frozen=True)
class _Case:
    code: str
    skin: np.ndarray  # RGB
    tone: float  # 0 (type I) .. 5 (type VI)
    size: float  # lesion size factor around 1
    angle: float
    elongation: float
    harmonics: tuple[tuple[int, float, float], ...]  # (k, amplitude, phase)


def _draw_case(code: str, rng: np.random.Generator) -> _Case:
    tone = float(np.clip(rng.normal(2.1, 1.1), 0.0, 5.0))
    lo = int(min(math.floor(tone), 4))
    t = tone - lo
    skin = (1 - t) * _SKIN_TONES[lo] + t * _SKIN_TONES[lo + 1]
    skin = np.clip(skin * (1 + 0.03 * rng.standard_normal(3)), 0, 1).astype(np.float32)
    irregular = {"MN": 0.05, "SK": 0.08, "BCC": 0.1, "Pso": 0.12, "VW": 0.1}.get(code, 0.15)
    harmonics = tuple(
        (k, float(irregular * rng.random() / (k - 1) ** 0.5), float(rng.uniform(0, 2 * np.pi)))
        for k in (2, 3, 4, 5)
    )
    return _Case(
        code=code,
        skin=skin,
        tone=tone,
        size=float(rng.uniform(0.75, 1.2)),
        angle=float(rng.uniform(0, np.pi)),
        elongation=float(rng.uniform(1.0, 1.35)),
        harmonics=harmonics,
    )


def _distance(h, w, cx, cy, radius, case: _Case, wobble: np.ndarray | None = None):
    """Normalised distance from a lesion centre: 1 on the (irregular, rotated) border.

    Computed at quarter resolution (it is smooth) and upsampled; ``wobble`` is added after.
    """
    sh, sw = math.ceil(h / 4), math.ceil(w / 4)
    yy, xx = _grid(sh, sw)
    dx, dy = 4 * xx + 1.5 - cx, 4 * yy + 1.5 - cy
    c, s = math.cos(case.angle), math.sin(case.angle)
    u = dx * c + dy * s
    v = (dy * c - dx * s) * case.elongation
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    edge = np.ones_like(r)
    for k, amp, phase in case.harmonics:
        edge += amp * np.cos(k * theta + phase)
    d = _resize(r / (radius * edge), w, h)
    if wobble is not None:
        d += wobble
    return d


# --------------------------------------------------------------------------- dermoscopy


def _vessel_tree(rng, x, y, angle, length, width, depth, out):
    pts = _curvy_line(rng, x, y, angle, length, n=5, bend=0.25)
    out.append((pts, max(1, round(width))))
    if depth == 0:
        return
    ex, ey = pts[-1]
    end_angle = math.atan2(ey - pts[-2][1], ex - pts[-2][0])
    for sign in (-1, 1):
        if rng.random() < 0.85:
            _vessel_tree(
                rng,
                ex,
                ey,
                end_angle + sign * rng.uniform(0.3, 0.8),
                length * rng.uniform(0.55, 0.8),
                width * 0.65,
                depth - 1,
                out,
            )


def _derm_lesion(img, case: _Case, rng, cx, cy, R):
    h, w = img.shape[1:]
    code = case.code
    if code == "MN":
        d = _distance(h, w, cx, cy, R, case, 0.05 * _fbm(rng, h, w, 60))
        m = _inside(d, 0.12)
        brown = _jitter(rng, (0.50, 0.32, 0.20), 0.04) * rng.uniform(0.7, 1.1)
        shade = 0.7 + 0.35 * np.clip(d, 0, 1)
        _blend(img, brown[:, None, None] * shade, 0.88 * m)
        globular = rng.random() < 0.4
        f1, f2, _ = _worley(rng, h, w, rng.uniform(14, 20), warp=2.5)
        net = _smoothstep(3.0, 0.8, f2 - f1)
        holes = 0.55 + 0.45 * _smoothstep(-0.6, 0.6, _fbm(rng, h, w, 70, 2))
        fade = np.clip(1.25 - 0.6 * d, 0, 1)
        strength = 0.35 if globular else 0.85
        _blend(img, _jitter(rng, (0.24, 0.13, 0.07)), strength * net * m * holes * fade)
        n = int(rng.integers(45, 90) if globular else rng.integers(0, 20))
        xs, ys = _points_in_disc(rng, cx, cy, 0.75 * R, n)
        glob = _dots(h, w, xs, ys, rng.uniform(4, 10, n), blur=1.5)
        _blend(img, _jitter(rng, (0.30, 0.16, 0.09)), 0.85 * glob * m)
    elif code == "SK":
        d = _distance(h, w, cx, cy, R, case, 0.04 * _fbm(rng, h, w, 40))
        m = _inside(d, 0.04)
        base = (0.68, 0.52, 0.36) if rng.random() < 0.6 else (0.48, 0.34, 0.23)
        _blend(img, _jitter(rng, base, 0.04, 0.1), 0.92 * m)
        fb = _fbm(rng, h, w, rng.uniform(35, 55), 3)
        _blend(img, (0.84, 0.72, 0.55), 0.45 * _smoothstep(0.2, 1.3, fb) * m)
        fiss = _smoothstep(0.16, 0.0, np.abs(fb))
        _blend(img, _jitter(rng, (0.26, 0.17, 0.10)), 0.8 * fiss * m)
        n = int(rng.integers(8, 26))
        xs, ys = _points_in_disc(rng, cx, cy, 0.8 * R, n)
        cysts = _dots(h, w, xs, ys, rng.uniform(4, 10, n), blur=2.0)
        _blend(img, (0.98, 0.96, 0.84), 0.92 * cysts * m)
        n = int(rng.integers(4, 14))
        xs, ys = _points_in_disc(rng, cx, cy, 0.8 * R, n)
        comedo = _dots(h, w, xs, ys, rng.uniform(3, 7, n), blur=1.2)
        _blend(img, (0.20, 0.13, 0.08), 0.85 * comedo * m)
    elif code == "BCC":
        d = _distance(h, w, cx, cy, R, case, 0.06 * _fbm(rng, h, w, 60))
        m = _inside(d, 0.25)
        _blend(img, _jitter(rng, (0.95, 0.79, 0.79), 0.04), 0.72 * m)
        shiny = _smoothstep(0.6, 1.6, _fbm(rng, h, w, 50, 2))
        _blend(img, (1.0, 0.97, 0.97), 0.45 * shiny * m)
        n = int(rng.integers(0, 5))
        xs, ys = _points_in_disc(rng, cx, cy, 0.7 * R, n)
        nests = _dots(h, w, xs, ys, rng.uniform(10, 28, n), blur=5)
        _blend(img, _jitter(rng, (0.36, 0.40, 0.50)), 0.7 * nests * m)
        if rng.random() < 0.35:
            ux, uy = _points_in_disc(rng, cx, cy, 0.4 * R, 1)
            du = _distance(h, w, ux[0], uy[0], 0.25 * R, case, 0.15 * _fbm(rng, h, w, 30))
            _blend(img, _jitter(rng, (0.45, 0.12, 0.10)), 0.9 * _inside(du, 0.2))
        lines: list = []
        for _ in range(int(rng.integers(3, 7))):
            t = rng.uniform(0, 2 * np.pi)
            x0, y0 = cx + 0.85 * R * math.cos(t), cy + 0.85 * R * math.sin(t)
            ang = t + np.pi + rng.normal(0, 0.5)
            _vessel_tree(rng, x0, y0, ang, rng.uniform(0.25, 0.45) * R, 6, 3, lines)
        vessels = _polylines(h, w, [p for p, _ in lines], [wd for _, wd in lines], blur=0.8)
        _blend(img, _jitter(rng, (0.76, 0.08, 0.14), 0.05), 0.92 * vessels * np.clip(m * 1.5, 0, 1))
    elif code in ("EAD", "SD"):
        d = _distance(h, w, cx, cy, 1.7 * R, case, 0.2 * _fbm(rng, h, w, 90))
        area = _inside(d, 0.6)
        eczema = code == "EAD"
        patches = _smoothstep(-0.4, 0.7, _fbm(rng, h, w, 120 if eczema else 160)) * area
        red = (0.84, 0.40, 0.36) if eczema else (0.92, 0.63, 0.58)
        _blend(img, _jitter(rng, red, 0.05), (0.72 if eczema else 0.6) * patches)
        f1, _, val = _worley(rng, h, w, 14 if eczema else 20, jitter=1.0)
        cluster = _smoothstep(0.2, 0.9, _fbm(rng, h, w, 60, 2))
        dots = _smoothstep(3.8, 2.2, f1) * (val < (0.8 if eczema else 0.3))
        _blend(img, (0.62, 0.08, 0.11), 0.8 * dots * cluster * patches)
        if eczema:
            flakes = _smoothstep(0.9, 1.7, _fbm(rng, h, w, 9, 2)) * patches
            _blend(img, (0.96, 0.93, 0.87), 0.75 * flakes)
            if rng.random() < 0.5:
                crust = _smoothstep(1.6, 2.2, _fbm(rng, h, w, 45, 2)) * patches
                _blend(img, (0.86, 0.60, 0.22), 0.85 * crust)
        else:
            greasy = _smoothstep(0.2, 1.0, _fbm(rng, h, w, rng.uniform(28, 40), 3)) * area
            _blend(img, _jitter(rng, (0.93, 0.80, 0.42), 0.04), 0.78 * greasy)
            gloss = _smoothstep(1.6, 2.4, _fbm(rng, h, w, 12, 2)) * greasy
            _blend(img, (1.0, 1.0, 0.93), 0.6 * gloss)
    elif code == "Pso":
        d = _distance(h, w, cx, cy, 1.15 * R, case, 0.05 * _fbm(rng, h, w, 40))
        m = _inside(d, 0.04)
        _blend(img, _jitter(rng, (0.82, 0.27, 0.27), 0.05), 0.88 * m)
        f1, _, _ = _worley(rng, h, w, rng.uniform(16, 22), jitter=0.35)
        dots = _smoothstep(4.5, 2.5, f1)
        _blend(img, (0.58, 0.04, 0.09), 0.9 * dots * m)
        scale = _smoothstep(-0.4, 0.7, _fbm(rng, h, w, 70, 2))
        scale *= 0.45 + 0.55 * _smoothstep(0.0, 1.0, _fbm(rng, h, w, 8, 2))
        _blend(img, (0.93, 0.94, 0.97), 0.88 * scale * m)
    elif code == "VW":
        d = _distance(h, w, cx, cy, R, case, 0.08 * _fbm(rng, h, w, 40))
        m = _inside(d, 0.1)
        _blend(img, _jitter(rng, (0.86, 0.75, 0.62), 0.05), 0.85 * m)
        cell = rng.uniform(36, 54)
        f1, f2, val = _worley(rng, h, w, cell, jitter=0.7)
        bump = np.clip(1.0 - f1 / (0.62 * cell), 0, 1)
        img *= 1.0 + m * (0.38 * bump - 0.2)
        _blend(img, (0.97, 0.92, 0.84), 0.5 * bump**2 * m)
        _blend(img, (0.50, 0.36, 0.30), 0.55 * _smoothstep(4.0, 1.0, f2 - f1) * m)
        rdot = rng.uniform(3.5, 6.5)
        dots = _smoothstep(rdot + 1.5, rdot - 1.5, f1) * (val < 0.85)
        _blend(img, (0.33, 0.03, 0.07), 0.95 * dots * m)
    elif code == "Rosa":
        red = _smoothstep(-1.2, 1.0, _fbm(rng, h, w, 150, 2))
        _blend(img, _jitter(rng, (0.88, 0.42, 0.42), 0.05), 0.35 + 0.3 * red)
        f1, f2, _ = _worley(rng, h, w, rng.uniform(75, 110), jitter=0.9, warp=14)
        keep = _smoothstep(-0.8, 0.1, _fbm(rng, h, w, 90, 2))
        vessel = _smoothstep(3.2, 0.8, f2 - f1) * keep
        _blend(img, _jitter(rng, (0.72, 0.07, 0.15), 0.05), 0.88 * vessel)
        f1, f2, _ = _worley(rng, h, w, rng.uniform(35, 50), jitter=0.9, warp=8)
        fine = _smoothstep(2.0, 0.5, f2 - f1) * _smoothstep(0.3, 1.0, _fbm(rng, h, w, 70, 2))
        _blend(img, (0.78, 0.15, 0.2), 0.6 * fine)
        n = int(rng.integers(3, 12))
        xs, ys = _points_in_disc(rng, cx, cy, 1.3 * R, n)
        plugs = _dots(h, w, xs, ys, rng.uniform(3, 6, n), blur=1.5)
        _blend(img, (0.96, 0.9, 0.75), 0.7 * plugs)
    else:  # pragma: no cover - guarded by make_case_images
        raise ValueError(code)


def _dermoscopic(case: _Case, rng: np.random.Generator) -> np.ndarray:
    w, h = DERMOSCOPIC_SIZE
    # Skin under polarised light: warmer, with fine furrows and faint mottling.
    skin = np.clip(case.skin * np.array([1.02, 0.97, 0.95], np.float32), 0, 1)
    img = np.empty((3, h, w), np.float32)
    img[:] = skin[:, None, None]
    img *= 1 + 0.05 * _fbm(rng, h, w, 120, 2)
    furrows = _smoothstep(0.12, 0.0, np.abs(_fbm(rng, h, w, 45, 2)))
    img *= 1 - 0.07 * furrows
    img *= 1 + 0.025 * _fbm(rng, h, w, 4, 1)

    cx = w / 2 + rng.normal(0, 30)
    cy = h / 2 + rng.normal(0, 30)
    radius = case.size * rng.uniform(150, 200)
    _derm_lesion(img, case, rng, cx, cy, radius)

    n_hairs = int(rng.choice([0, 0, 1, 2, 3, 5]))
    if n_hairs:
        hair_lines = [
            _curvy_line(rng, *rng.uniform(0, w, 2), rng.uniform(0, 2 * np.pi), 500, 10, 0.08)
            for _ in range(n_hairs)
        ]
        hairs = _polylines(h, w, hair_lines, rng.integers(2, 5, n_hairs), blur=0.7)
        _blend(img, (0.12, 0.08, 0.06), 0.9 * hairs)

    img *= np.clip(1 + 0.03 * rng.standard_normal(3), 0.9, 1.1).astype(np.float32)[:, None, None]
    img *= np.float32(rng.uniform(0.9, 1.08))
    # The round field of view of a contact dermoscope, with a dark vignette.
    # Computed at half resolution and upsampled: it is smooth at the scale of 2 pixels.
    ap = rng.uniform(0.44, 0.49) * w
    sy, sx = _grid(h // 2, w // 2)
    r = np.hypot(
        2 * sx + 0.5 - (w / 2 + rng.normal(0, 6)), 2 * sy + 0.5 - (h / 2 + rng.normal(0, 6))
    )
    inside = _smoothstep(ap + 4, ap - 6, r)
    img *= _resize((1 - 0.4 * (r / ap) ** 4) * inside, w, h)
    img += np.array([0.015, 0.015, 0.02], np.float32)[:, None, None] * _resize(1 - inside, w, h)
    img += 0.04 * (rng.random((h, w), dtype=np.float32) - 0.5)
    return img


# --------------------------------------------------------------------------- clinical


def _clin_lesion(img, case: _Case, rng, cx, cy, R):
    h, w = img.shape[1:]
    code = case.code
    if code == "MN":
        R *= 0.6
        d = _distance(h, w, cx, cy, R, case, 0.04 * _fbm(rng, h, w, 20))
        m = _inside(d, 0.15)
        brown = _jitter(rng, (0.42, 0.27, 0.17), 0.04) * rng.uniform(0.55, 1.1)
        _blend(img, brown[:, None, None] * (0.75 + 0.3 * np.clip(d, 0, 1)), 0.92 * m)
        hl = np.exp(-(_distance(h, w, cx - 0.3 * R, cy - 0.3 * R, 0.35 * R, case) ** 2))
        _blend(img, (1, 1, 1), 0.18 * hl * m)
    elif code == "SK":
        warty = 0.16 * _fbm(rng, h, w, 4, 2)
        fiss = _smoothstep(0.15, 0.0, np.abs(_fbm(rng, h, w, 14, 2)))
        for i in range(int(rng.integers(1, 4))):
            s = 1.0 if i == 0 else rng.uniform(0.3, 0.55)
            x, y = (cx, cy) if i == 0 else rng.normal((cx, cy), 1.6 * R)
            m = _inside(_distance(h, w, x, y, s * R, case), 0.05)
            _blend(img, _jitter(rng, (0.50, 0.34, 0.22), 0.04, 0.25), 0.93 * m)
            img *= 1 + m * warty
            _blend(img, (0.22, 0.14, 0.09), 0.7 * fiss * m)
    elif code == "BCC":
        R *= 0.7
        d = _distance(h, w, cx, cy, R, case, 0.05 * _fbm(rng, h, w, 20))
        m = _inside(d, 0.25)
        _blend(img, (0.85, 0.45, 0.45), 0.35 * _inside(d / 1.5, 0.6))
        _blend(img, _jitter(rng, (0.93, 0.72, 0.72), 0.04), 0.8 * m)
        _blend(img, (1.0, 0.93, 0.92), 0.4 * np.exp(-(((d - 0.8) / 0.12) ** 2)))
        if rng.random() < 0.5:
            du = _distance(h, w, cx, cy, 0.35 * R, case, 0.1 * _fbm(rng, h, w, 10))
            _blend(img, _jitter(rng, (0.50, 0.12, 0.10)), 0.9 * _inside(du, 0.3))
        n = int(rng.integers(2, 5))
        xs, ys = _points_in_disc(rng, cx, cy, 0.6 * R, n)
        lines = [
            _curvy_line(rng, float(x), float(y), rng.uniform(0, 7), R * 0.7)
            for x, y in zip(xs, ys, strict=True)
        ]
        _blend(img, (0.75, 0.1, 0.15), 0.7 * _polylines(h, w, lines, [1] * n, 0.5) * m)
        hl = np.exp(-(_distance(h, w, cx - 0.35 * R, cy - 0.35 * R, 0.25 * R, case) ** 2))
        _blend(img, (1, 1, 1), 0.4 * hl * m)
    elif code in ("EAD", "SD"):
        eczema = code == "EAD"
        d = _distance(h, w, cx, cy, 2.4 * R, case, 0.25 * _fbm(rng, h, w, 70))
        area = _inside(d, 0.6) * _smoothstep(0.0, 0.9, _fbm(rng, h, w, 70 if eczema else 90))
        red = (0.82, 0.38, 0.36) if eczema else (0.90, 0.60, 0.54)
        _blend(img, _jitter(rng, red, 0.05), 0.68 * area)
        if eczema:
            flakes = _smoothstep(1.0, 1.8, _fbm(rng, h, w, 3, 1)) * area
            _blend(img, (0.95, 0.92, 0.88), 0.6 * flakes)
            n = int(rng.integers(3, 9))
            lines = [
                _curvy_line(rng, *rng.normal((cx, cy), 1.2 * R), rng.uniform(0, 7), 25, 4, 0.2)
                for _ in range(n)
            ]
            _blend(img, (0.6, 0.1, 0.1), 0.7 * _polylines(h, w, lines, [2] * n, 0.6))
        else:
            greasy = _smoothstep(0.3, 1.1, _fbm(rng, h, w, 8, 2)) * area
            _blend(img, _jitter(rng, (0.90, 0.78, 0.44), 0.04), 0.75 * greasy)
    elif code == "Pso":
        wobble = 0.05 * _fbm(rng, h, w, 20)
        scale = _smoothstep(-0.4, 0.6, _fbm(rng, h, w, 6, 2))
        for i in range(int(rng.integers(1, 5))):
            s = 1.0 if i == 0 else rng.uniform(0.35, 0.7)
            x, y = (cx, cy) if i == 0 else rng.normal((cx, cy), 2.2 * R)
            m = _inside(_distance(h, w, x, y, s * R, case, wobble), 0.05)
            _blend(img, _jitter(rng, (0.78, 0.25, 0.25), 0.06), 0.9 * m)
            _blend(img, (0.91, 0.91, 0.94), 0.85 * scale * m)
    elif code == "VW":
        wobble = 0.1 * _fbm(rng, h, w, 6)
        grain = 0.1 * _fbm(rng, h, w, 2.5, 1) - 0.05
        for i in range(int(rng.integers(1, 6))):
            s = rng.uniform(0.5, 0.8) if i == 0 else rng.uniform(0.2, 0.4)
            x, y = (cx, cy) if i == 0 else rng.normal((cx, cy), 1.6 * R)
            d = _distance(h, w, x, y, s * R, case, wobble)
            m = _inside(d, 0.2)
            wart = 0.55 * case.skin + 0.45 * _jitter(rng, (0.76, 0.68, 0.58), 0.05)
            _blend(img, wart, 0.8 * m)
            img *= 1 + m * (grain + 0.15 * (1 - np.clip(d, 0, 1)))
            n = int(rng.integers(3, 10))
            xs, ys = _points_in_disc(rng, x, y, 0.7 * s * R, n)
            _blend(img, (0.2, 0.05, 0.06), 0.9 * _dots(h, w, xs, ys, rng.uniform(0.8, 1.8, n)))
    elif code == "Rosa":
        d = _distance(h, w, cx, cy, 3.2 * R, case, 0.2 * _fbm(rng, h, w, 90))
        area = _inside(d, 0.8)
        _blend(
            img, _jitter(rng, (0.86, 0.40, 0.40), 0.05), area * (0.4 + 0.2 * _noise(rng, h, w, 50))
        )
        n = int(rng.integers(5, 16))
        xs, ys = _points_in_disc(rng, cx, cy, 2.2 * R, n)
        _blend(img, (0.75, 0.2, 0.22), 0.8 * _dots(h, w, xs, ys, rng.uniform(2.5, 5, n), 1.2))
        n = int(rng.integers(5, 12))
        lines = [
            _curvy_line(rng, *rng.normal((cx, cy), 1.5 * R), rng.uniform(0, 7), 40, 6, 0.5)
            for _ in range(n)
        ]
        _blend(img, (0.72, 0.1, 0.15), 0.55 * _polylines(h, w, lines, [1] * n, 0.4) * area)
    else:  # pragma: no cover - guarded by make_case_images
        raise ValueError(code)


def _clinical(case: _Case, rng: np.random.Generator) -> np.ndarray:
    w, h = CLINICAL_SIZE
    yy, xx = _grid(h, w)
    img = np.empty((3, h, w), np.float32)
    img[:] = case.skin[:, None, None]
    light_angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx * math.cos(light_angle) + yy * math.sin(light_angle)) / max(w, h)
    img *= rng.uniform(0.95, 1.05) + 0.18 * (ramp - ramp.mean())
    img *= 1 + 0.05 * _fbm(rng, h, w, 90, 3)
    img *= 1 + 0.03 * _fbm(rng, h, w, 2.5, 1)

    cx = w / 2 + rng.normal(0, 50)
    cy = h / 2 + rng.normal(0, 40)
    radius = case.size * rng.uniform(42, 62)

    n = int(rng.integers(0, 8))
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    _blend(img, (0.38, 0.25, 0.17), 0.6 * _dots(h, w, xs, ys, rng.uniform(1.2, 2.5, n), 0.6))

    _clin_lesion(img, case, rng, cx, cy, radius)

    # Context: the edge of the body part against a drape or wall.
    if rng.random() < 0.75:
        t = rng.uniform(0, 2 * np.pi)
        nx, ny = math.cos(t), math.sin(t)
        offset = rng.uniform(2.6, 4.0) * radius + 40
        along = -(xx - cx) * ny + (yy - cy) * nx
        s = (xx - cx) * nx + (yy - cy) * ny - offset - 0.0006 * along**2 * rng.uniform(0.5, 2)
        s += 6 * _fbm(rng, h, w, 80, 2)
        shadow = _smoothstep(-40, 0, s)
        img *= 1 - 0.35 * shadow
        bg = [(0.33, 0.48, 0.58), (0.84, 0.85, 0.83), (0.14, 0.14, 0.16), (0.30, 0.48, 0.40)]
        bg_col = _jitter(rng, bg[int(rng.integers(len(bg)))], 0.04)
        back = bg_col[:, None, None] * (1 + 0.04 * _fbm(rng, h, w, 60, 2))
        _blend(img, back, _smoothstep(-1.5, 1.5, s))

    img *= np.clip(1 + 0.03 * rng.standard_normal(3), 0.9, 1.1).astype(np.float32)[:, None, None]
    img *= np.float32(rng.uniform(0.9, 1.08))
    img += 0.035 * (rng.random((h, w), dtype=np.float32) - 0.5)
    return img


# --------------------------------------------------------------------------- public API


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def add_watermark(image: Image.Image, text: str = WATERMARK_TEXT) -> Image.Image:
    """Return a copy of ``image`` (RGB) with ``text`` small in the bottom-right corner.

    White text on a translucent dark box. The font scales with the image's longer side
    so that the mark is still legible in the admin's thumbnails, which shrink that side
    to :data:`THUMB_SIDE` (256 px): there the font is about 11 px, the text about a fifth
    of the width. Unobtrusive on the full image, legible on any background.
    """
    base = image.convert("RGBA")
    w, h = base.size
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    scale = max(1.0, max(w, h) / THUMB_SIDE)
    font = _font(round(_THUMB_FONT_PX * scale))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left, bottom - top
    margin, pad = max(4, min(w, h) // 60), max(3, round(2 * scale))
    x, y = w - margin - pad - tw, h - margin - pad - th
    draw.rectangle([x - pad, y - pad, x + tw + pad, y + th + pad], fill=(0, 0, 0, 140))
    draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255, 220))
    return Image.alpha_composite(base, overlay).convert("RGB")


def _to_image(arr: np.ndarray) -> Image.Image:
    """Channel-first float array in [0, 1] -> RGB image."""
    rgb = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)), "RGB")


def make_case_images(
    code: str, *, rng: np.random.Generator, watermark: bool = True
) -> tuple[Image.Image, Image.Image]:
    """Render one synthetic case of class ``code``: ``(clinical, dermoscopic)`` RGB images.

    The clinical photo is :data:`CLINICAL_SIZE` (640x480), the dermoscopic image
    :data:`DERMOSCOPIC_SIZE` (600x600). Deterministic given the state of ``rng`` (which
    it advances). ``watermark=False`` leaves out the "SYNTHETIC" mark (for tests only:
    demo images should always carry it).
    """
    if code not in DEMO_CHOICES:
        raise ValueError(f"unknown demo diagnosis {code!r}; expected one of {DEMO_CHOICES}")
    with _single_threaded_blas():
        case = _draw_case(code, rng)
        clinical = _to_image(_clinical(case, rng))
        dermoscopic = _to_image(_dermoscopic(case, rng))
    if watermark:
        clinical, dermoscopic = add_watermark(clinical), add_watermark(dermoscopic)
    return clinical, dermoscopic
