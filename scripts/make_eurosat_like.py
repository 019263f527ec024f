#!/usr/bin/env python3
"""Generate a EuroSAT-like tree of 64x64 RGB JPEGs, deterministically.

The real EuroSAT RGB set (27,000 images in ten class folders) cannot be
downloaded on the machines we test on, so tests and benchmarks use this
stand-in: the same class names, counts and file naming
(``Forest/Forest_1.jpg`` ...), 64x64 RGB JPEGs whose content varies per
image (a class tint, a gradient and noise), so brightness statistics differ
from image to image as they do in the real set.

    python scripts/make_eurosat_like.py OUT              # 27,000 images
    python scripts/make_eurosat_like.py OUT --scale 0.01 # 270 images
    python scripts/make_eurosat_like.py OUT --copies 10  # 270,000 images

The same arguments always give byte-identical files.
"""

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor

# The real EuroSAT RGB class folders and their image counts.
EUROSAT_CLASSES = {
    "AnnualCrop": 3000,
    "Forest": 3000,
    "HerbaceousVegetation": 3000,
    "Highway": 2500,
    "Industrial": 2500,
    "Pasture": 2000,
    "PermanentCrop": 2500,
    "Residential": 3000,
    "River": 2500,
    "SeaLake": 3000,
}


def class_counts(scale=1.0, per_class=None):
    """Images per class: the real counts times ``scale``, or ``per_class`` each."""
    if per_class is not None:
        return {name: per_class for name in EUROSAT_CLASSES}
    return {name: max(1, round(n * scale)) for name, n in EUROSAT_CLASSES.items()}


def render(class_index, number, size=64):
    """One image as JPEG bytes; depends only on (class_index, number)."""
    import numpy as np
    from io import BytesIO
    from PIL import Image

    rng = np.random.default_rng([class_index, number])
    tint = np.array([40 + 20 * class_index % 160, 90, 200 - 15 * class_index], float)
    ramp = np.linspace(0.0, 1.0, size)
    angle = rng.uniform(0, 2 * np.pi)
    field = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    brightness = rng.uniform(0.3, 1.3)
    pixels = (
        tint[None, None, :] * brightness
        + 60 * field[:, :, None] * rng.uniform(-1, 1, 3)
        + rng.normal(0, rng.uniform(2, 30), (size, size, 3))
    )
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    out = BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _write_class(task):
    out, class_index, name, count, copies = task
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    for number in range(1, count + 1):
        data = render(class_index, number)
        for copy in range(copies):
            # Copies reuse the content under new numbers: cheap large trees.
            with open(os.path.join(folder, f"{name}_{number + copy * count}.jpg"), "wb") as f:
                f.write(data)
    return count * copies


def generate(out, scale=1.0, per_class=None, copies=1, workers=None):
    """Write the tree under ``out``; return the number of images written."""
    counts = class_counts(scale, per_class)
    tasks = [
        (out, index, name, counts[name], copies)
        for index, name in enumerate(EUROSAT_CLASSES)
    ]
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        return sum(pool.map(_write_class, tasks))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to create (e.g. data/EuroSAT_RGB)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, default=1.0, help="fraction of the real counts")
    size.add_argument("--per-class", type=int, help="this many images in every class")
    parser.add_argument("--copies", type=int, default=1, help="repeat each image N times")
    args = parser.parse_args(argv)
    n = generate(args.out, args.scale, args.per_class, args.copies)
    print(f"wrote {n} images under {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
