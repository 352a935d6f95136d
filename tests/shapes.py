"""A class-per-folder image set of rendered shapes: recognisable classes at any size and count,
generated offline (the tests' and ``benchmarks/data_scale.py``'s stand-in for users' folders).

Each image: a noisy background of a random colour, one shape (the class) of another colour,
at a random place and size. Deterministic in (seed, index).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle", "cross", "ring")


def render(kind: str, size: int, rng: np.random.Generator):
    from PIL import Image, ImageDraw

    background = tuple(int(c) for c in rng.integers(0, 256, 3))
    noise = rng.integers(-24, 25, (size, size, 3))
    pixels = np.clip(np.array(background) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    colour = tuple(int((b + 128 + d) % 256) for b, d in zip(background,
                                                             rng.integers(-40, 41, 3), strict=True))
    r = size * rng.uniform(0.2, 0.35)
    cx, cy = rng.uniform(r, size - r, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    width = max(1, size // 10)
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif kind == "cross":
        draw.line((cx - r, cy - r, cx + r, cy + r), fill=colour, width=width)
        draw.line((cx - r, cy + r, cx + r, cy - r), fill=colour, width=width)
    else:
        draw.ellipse(box, outline=colour, width=width)
    return image


def _write(job: tuple[str, int, int, int, int]) -> None:
    root, start, stop, size, seed = job
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        kind = CLASSES[i % len(CLASSES)]
        render(kind, size, rng).save(Path(root) / kind / f"{i:07d}.png")


def write_folder(root: Path, count: int, size: int = 32, seed: int = 0, start: int = 0,
                 workers: int | None = None) -> Path:
    """Images ``start`` … ``start + count − 1`` under ``root/<class>/``; returns ``root``."""
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 8)
    step = max(1, -(-count // (workers * 4)))
    jobs = [(str(root), a, min(a + step, start + count), size, seed)
            for a in range(start, start + count, step)]
    if workers == 1 or count < 2000:
        for job in jobs:
            _write(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write, jobs))
    return root
