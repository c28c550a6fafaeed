"""Render one synthetic scene (vectorised numpy): textured stuff regions and solid shapes.

A scene is 1-3 stuff regions with irregular boundaries that tile the canvas, then 1-8 thing
instances painted back to front with random scale (log-uniform, so many are small),
rotation, partial occlusion, and sometimes a touching twin of the same category. Finally a
light photometric change: global gain and colour cast, an illumination ramp, per-instance
brightness and shading, Gaussian noise and a small blur, so a colour is never one pixel
value. Every random draw comes from the ``numpy.random.Generator`` passed in, so a scene is
a pure function of its generator state.

Coordinates: pixel (row y, column x), centres at +0.5; sizes in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from zsp_ros.data.categories import CocoCategory

# Shape geometry in unit coordinates (circumradius 1).
_SQUARE_HALF = 0.8
_STAR_INNER = 0.45
_CROSS_HALF_WIDTH = 0.33
_CROSS_HALF_LENGTH = 0.95
_RING_INNER = 0.55

MIN_RADIUS_FRACTION = 0.045    # smallest thing circumradius, fraction of min(H, W)
MAX_RADIUS_FRACTION = 0.2
MIN_VISIBLE_FRACTION = 0.4     # an instance is kept only if this much of it is visible
MIN_VISIBLE_PIXELS = 8
MIN_STUFF_FRACTION = 0.06      # a stuff region smaller than this share of the canvas is merged away
TWIN_PROBABILITY = 0.25        # chance that the next instance touches the previous one, same category


@dataclass
class Scene:
    """One rendered scene.

    image: uint8 [H, W, 3] RGB.
    segment_map: int32 [H, W], index into ``segments`` for every pixel (-1 = void, unused here).
    segments: per segment ``{"category_id": int, "isthing": bool}``; stuff first, then things
        bottom to top. Every listed segment has at least one pixel.
    """

    image: np.ndarray
    segment_map: np.ndarray
    segments: list[dict]


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of unit-frame points (u, v) (any equal shapes, float) in ``shape``; bool."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= _RING_INNER ** 2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return (((au <= _CROSS_HALF_WIDTH) & (av <= _CROSS_HALF_LENGTH))
                | ((av <= _CROSS_HALF_WIDTH) & (au <= _CROSS_HALF_LENGTH)))
    if shape == "triangle":
        # Equilateral, vertices at angles 90°, 210°, 330°: inside all three edge half-planes
        # (the inscribed circle has radius 1/2).
        inside = np.ones(u.shape, dtype=bool)
        for angle in (np.pi / 2 + np.pi, np.pi / 2 + np.pi / 3, np.pi / 2 - np.pi / 3):
            inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5
        return inside
    if shape == "star":
        # Five points: boundary radius between alternating outer (1) and inner vertices,
        # each edge a straight line between consecutive vertices, pi/5 apart.
        alpha = np.pi / 5
        theta = np.mod(np.arctan2(v, u) - np.pi / 2, 2 * np.pi)
        sector = np.floor(theta / alpha)
        t = theta - sector * alpha
        even = np.mod(sector, 2) == 0
        r0 = np.where(even, 1.0, _STAR_INNER)
        r1 = np.where(even, _STAR_INNER, 1.0)
        denom = r1 * np.sin(alpha) * np.cos(t) + (r0 - r1 * np.cos(alpha)) * np.sin(t)
        boundary = r0 * r1 * np.sin(alpha) / denom
        return u * u + v * v <= boundary * boundary
    raise ValueError(f"unknown shape {shape!r}")


def _interp_matrix(n: int, cells: int) -> np.ndarray:
    """float32 [n, cells+1]: rows of linear-interpolation weights from a grid to n samples."""
    pos = np.linspace(0.0, cells, n)
    i0 = np.minimum(pos.astype(np.int64), cells - 1)
    frac = pos - i0
    weights = np.zeros((n, cells + 1), dtype=np.float32)
    weights[np.arange(n), i0] = 1.0 - frac
    weights[np.arange(n), i0 + 1] = frac
    return weights


@lru_cache(maxsize=16)
def _grids(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only float32 [H, W] pixel-centre coordinates (ys, xs)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


@lru_cache(maxsize=16)
def _interp_pair(height: int, width: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    return _interp_matrix(height, cells), _interp_matrix(width, cells).T.copy()


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """float32 [H, W] N(0,1) values on a (cells+1)² grid, bilinearly interpolated."""
    grid = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
    wy, wx = _interp_pair(height, width, cells)
    return wy @ grid @ wx


def texture_pattern(texture: str, rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray,
                    period: float) -> np.ndarray:
    """float32 [H, W] in {0, 1}: 1 where the texture's second (accent) tone goes.

    ``ys``/``xs`` are float32 [H, W] pixel-centre coordinates, ``period`` in pixels.
    """
    angle = rng.uniform(0.0, np.pi)
    phase = [float(p) for p in rng.uniform(0.0, 1.0, size=2)]
    c, s = float(np.cos(angle)), float(np.sin(angle))
    if texture == "stripes":
        t = (xs * c + ys * s) / period + phase[0]
        return (np.mod(t, 1.0) < 0.5).astype(np.float32)
    if texture == "checks":
        a = (xs * c + ys * s) / period + phase[0]
        b = (-xs * s + ys * c) / period + phase[1]
        return np.mod(np.floor(a) + np.floor(b), 2).astype(np.float32)
    if texture == "dots":
        a = np.mod((xs * c + ys * s) / period + phase[0], 1.0) - 0.5
        b = np.mod((-xs * s + ys * c) / period + phase[1], 1.0) - 0.5
        return (a * a + b * b < 0.3 ** 2).astype(np.float32)
    if texture == "bricks":
        # Axis-aligned (or turned 90°) courses of bricks two periods long; the accent is mortar.
        horizontal = rng.uniform() < 0.5
        along, across = (xs, ys) if horizontal else (ys, xs)
        course_h = 0.9 * period
        row = np.floor(across / course_h + phase[0])
        in_row = np.mod(across / course_h + phase[0], 1.0)
        in_brick = np.mod(along / (2 * period) + phase[1] + 0.5 * np.mod(row, 2), 1.0)
        mortar = (in_row < 0.2) | (in_brick < 0.1)
        return mortar.astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}")


def _stuff_layout(rng: np.random.Generator, height: int, width: int, count: int) -> np.ndarray:
    """int32 [H, W] region index in [0, count): noisy Voronoi cells, tiny cells merged away."""
    if count == 1:
        return np.zeros((height, width), dtype=np.int32)
    ys, xs = _grids(height, width)
    seeds = rng.uniform((0, 0), (height, width), size=(count, 2)).astype(np.float32)
    scale = 0.3 * min(height, width)
    dist = np.stack([np.hypot(ys - sy, xs - sx) + scale * smooth_noise(rng, height, width, 4)
                     for sy, sx in seeds])
    alive = np.ones(count, dtype=bool)
    while True:
        masked = np.where(alive[:, None, None], dist, np.inf)
        layout = masked.argmin(axis=0).astype(np.int32)
        share = np.bincount(layout.ravel(), minlength=count) / layout.size
        small = alive & (share < MIN_STUFF_FRACTION)
        if not small.any() or alive.sum() == 1:
            return layout
        alive[np.flatnonzero(small)[np.argmin(share[small])]] = False


def _edge(mask: np.ndarray) -> np.ndarray:
    """bool, pixels of ``mask`` with a 4-neighbour outside it (the border counts as outside)."""
    padded = np.pad(mask, 1)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def _blur(image: np.ndarray, weight: float) -> np.ndarray:
    """Separable 3-tap blur [w, 1-2w, w] with edge replication, in place; float32 [H, W, C]."""
    if weight <= 0:
        return image
    for axis in (0, 1):
        src = image.copy()
        image *= 1 - 2 * weight
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        image[tuple(hi)] += weight * src[tuple(lo)]
        image[tuple(lo)] += weight * src[tuple(hi)]
        first = [slice(None)] * 3
        last = [slice(None)] * 3
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        image[tuple(first)] += weight * src[tuple(first)]
        image[tuple(last)] += weight * src[tuple(last)]
    return image


def _sample_things(rng: np.random.Generator, things: Sequence[CocoCategory], height: int,
                   width: int) -> list[dict]:
    """Instance parameters (category, centre, radius, rotation), bottom to top."""
    side = min(height, width)
    count = int(rng.integers(1, 9))
    out: list[dict] = []
    while len(out) < count:
        radius = side * float(np.exp(rng.uniform(np.log(MIN_RADIUS_FRACTION), np.log(MAX_RADIUS_FRACTION))))
        if out and rng.uniform() < TWIN_PROBABILITY:
            prev = out[-1]
            phi = rng.uniform(0, 2 * np.pi)
            dist = 0.95 * (prev["radius"] + radius)
            cy, cx = prev["cy"] + dist * np.sin(phi), prev["cx"] + dist * np.cos(phi)
            category = prev["category"]
        else:
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            category = things[int(rng.integers(len(things)))]
        out.append({"category": category, "cy": float(cy), "cx": float(cx), "radius": radius,
                    "rotation": float(rng.uniform(0, 2 * np.pi))})
    return out


def _rasterise(inst: dict, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray, int] | None:
    """(canvas window, bool mask inside it, full unclipped area) of one instance, or None if off-canvas."""
    r = inst["radius"]
    y0, y1 = int(np.floor(inst["cy"] - r)) - 1, int(np.ceil(inst["cy"] + r)) + 1
    x0, x1 = int(np.floor(inst["cx"] - r)) - 1, int(np.ceil(inst["cx"] + r)) + 1
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    dy, dx = (ys - inst["cy"]) / r, (xs - inst["cx"]) / r
    c, s = float(np.cos(inst["rotation"])), float(np.sin(inst["rotation"]))
    full = shape_mask(inst["category"]["shape"], dx * c + dy * s, -dx * s + dy * c)
    total = int(full.sum())
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
    if cy0 >= cy1 or cx0 >= cx1 or total == 0:
        return None
    mask = full[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return (slice(cy0, cy1), slice(cx0, cx1)), mask, total


def _jitter_colour(rng: np.random.Generator, rgb: Sequence[int], spread: float) -> np.ndarray:
    gain = rng.uniform(1 - spread, 1 + spread)
    return np.asarray(rgb, dtype=np.float32) * gain + rng.normal(0, 6, size=3).astype(np.float32)


def render_scene(rng: np.random.Generator, *, height: int, width: int,
                 things: Sequence[CocoCategory], stuff: Sequence[CocoCategory]) -> Scene:
    """Render one scene from the thing and stuff categories (dicts with "shape"/"texture", "color")."""
    if not things or not stuff:
        raise ValueError("render_scene needs at least one thing and one stuff category")
    side = min(height, width)
    ys, xs = _grids(height, width)

    # Stuff: distinct categories on a noisy Voronoi tiling.
    n_stuff = min(int(rng.integers(1, 4)), len(stuff))
    stuff_cats = [stuff[i] for i in rng.choice(len(stuff), size=n_stuff, replace=False)]
    layout = _stuff_layout(rng, height, width, n_stuff)
    bases = np.zeros((n_stuff, 3), dtype=np.float32)
    accents = np.zeros((n_stuff, 3), dtype=np.float32)
    pattern = np.zeros((height, width), dtype=np.float32)
    for k, cat in enumerate(stuff_cats):
        bases[k] = _jitter_colour(rng, cat["color"], 0.08)
        # Accent tone: darker for stripes/checks/dots, light mortar for bricks.
        accents[k] = 0.4 * bases[k] + 120.0 if cat["texture"] == "bricks" else 0.5 * bases[k]
        period = max(5.0, side * rng.uniform(0.06, 0.10))
        np.copyto(pattern, texture_pattern(cat["texture"], rng, ys, xs, period), where=layout == k)
    pattern = pattern[..., None]
    image = bases[layout] * (1.0 - pattern) + accents[layout] * pattern

    # Things: keep an instance only if enough of it stays visible under the ones above it.
    instances = _sample_things(rng, things, height, width)
    raster = [_rasterise(inst, height, width) for inst in instances]
    covered = np.zeros((height, width), dtype=bool)
    keep = [False] * len(instances)
    for i in range(len(instances) - 1, -1, -1):
        if raster[i] is None:
            continue
        window, mask, total = raster[i]
        visible = int((mask & ~covered[window]).sum())
        if visible >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * total):
            keep[i] = True
            covered[window] |= mask

    segment_map = np.empty((height, width), dtype=np.int32)
    segment_map[...] = layout
    segments = [{"category_id": c["id"], "isthing": False} for c in stuff_cats]
    for inst, ras, kept in zip(instances, raster, keep):
        if not kept:
            continue
        window, mask, _ = ras
        colour = _jitter_colour(rng, inst["category"]["color"], 0.08)
        # Shading: a linear ramp of +-8 % across the instance, darker rim one pixel wide.
        phi = rng.uniform(0, 2 * np.pi)
        ramp = ((xs[window] - inst["cx"]) * float(np.cos(phi)) + (ys[window] - inst["cy"]) * float(np.sin(phi)))
        shade = 1.0 + (0.08 / inst["radius"]) * ramp
        shade = np.where(_edge(mask), 0.7 * shade, shade)
        patch = image[window]
        patch[mask] = (colour[None, None, :] * shade[..., None])[mask]
        segment_map[window][mask] = len(segments)
        segments.append({"category_id": inst["category"]["id"], "isthing": True})

    # Global photometric change.
    gain = (rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, size=3)).astype(np.float32)
    phi = rng.uniform(0, 2 * np.pi)
    ramp = ((xs - width / 2) * float(np.cos(phi)) + (ys - height / 2) * float(np.sin(phi))) * (1.0 / side)
    light = 1.0 + rng.uniform(0.0, 0.25) * ramp
    image = image * gain[None, None, :] * light[..., None]
    image += np.float32(rng.uniform(2.0, 6.0)) * rng.standard_normal(image.shape, dtype=np.float32)
    image = _blur(image, float(rng.uniform(0.0, 0.2)))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    # Drop segments left without pixels (a stuff region covered by things), renumber.
    counts = np.bincount(segment_map.ravel(), minlength=len(segments))
    alive = np.flatnonzero(counts > 0)
    if len(alive) < len(segments):
        remap = np.full(len(segments), -1, dtype=np.int32)
        remap[alive] = np.arange(len(alive), dtype=np.int32)
        segment_map = remap[segment_map]
        segments = [segments[i] for i in alive]
    return Scene(image=image, segment_map=segment_map, segments=segments)
