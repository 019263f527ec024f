#!/usr/bin/env python3
"""Generate a tree of camera-sized images, deterministically.

EuroSAT's 64x64 JPEGs cost ~0.2 ms each to measure, so a tree of them
measures the workflow's per-job and per-file overheads. Real image folders
also hold photos and scans that cost 10-100 ms each: this tree stands in for
those, so that a benchmark sees how shards of heavy images are cut and how
busy they keep the cores. Per 1.0 of --scale:

  * 400 JPEGs of 3000x2000 RGB (6 megapixels, a common camera), camera-like: smooth colour gradients, blotchy
    mid-scale texture and sensor noise, quality 95, so a few MB each (flat
    images would compress to almost nothing and decode unrealistically fast);
  * 80 PNG "scans" of 1500x1500, alternately greyscale (L) and RGB: a bright
    page with a gradient, texture and noise;
  * 4 TIFFs of 4000x3000: RGB and 16-bit greyscale (I;16, values far above
    255), each uncompressed and LZW.

Images go into EuroSAT's ten class folders (``Forest/Forest_3.jpg``), kinds
spread over the classes. Each image depends only on its kind and number (a
seeded generator), so the same arguments always give the same pixels; the
files are written in parallel, each under a temporary name then renamed.

    python scripts/make_heavy_tree.py OUT               # 484 images, ~2.5 GB
    python scripts/make_heavy_tree.py OUT --scale 0.1   # 35 images
"""

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO

CLASSES = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
)  # fmt: skip

# kind -> (count at scale 1, extension, width, height)
KINDS = {
    "photo": (400, "jpg", 3000, 2000),
    "scan": (80, "png", 1500, 1500),
    "tiff": (4, "tif", 4000, 3000),
}
# TIFF variants in turn: (mode, compression); at least one of each mode.
TIFF_VARIANTS = (("RGB", None), ("I;16", None), ("RGB", "tiff_lzw"), ("I;16", "tiff_lzw"))


def counts(scale=1.0):
    """Images per kind; TIFFs keep at least one RGB and one I;16."""
    found = {kind: max(1, round(n * scale)) for kind, (n, *_) in KINDS.items()}
    found["tiff"] = max(2, found["tiff"])
    return found


def plan(scale=1.0):
    """Every image to write: (kind, index, relative path), heaviest first.

    Numbers run on within a class across kinds, so names stay unique and
    EuroSAT-like (``Forest_1.jpg`` ... ``Forest_26.png``).
    """
    next_number = dict.fromkeys(CLASSES, 1)
    tasks = []
    for kind in ("tiff", "scan", "photo"):
        ext = KINDS[kind][1]
        for index in range(counts(scale)[kind]):
            name = CLASSES[index % len(CLASSES)]
            number = next_number[name]
            next_number[name] += 1
            tasks.append((kind, index, os.path.join(name, f"{name}_{number}.{ext}")))
    return tasks


def _smooth(rng, width, height, channels, cells, low, high):
    """A smooth random field: a cells x cells grid of values in low..high,
    upscaled bicubically (as float images, so no 8-bit banding)."""
    import numpy as np
    from PIL import Image

    grid = rng.uniform(low, high, (channels, cells, cells)).astype(np.float32)
    planes = [
        np.asarray(Image.fromarray(plane).resize((width, height), Image.BICUBIC))
        for plane in grid
    ]
    return np.stack(planes, axis=-1)


def pixels(rng, width, height, channels, base=(20, 235), noise=(8, 16)):
    """Camera-like float pixels, mostly within 0..255.

    A scene's brightness varies at every scale, so the luminance is fractal:
    smooth fields of 4, 16, 64 and 256 cells across, each 0.6 times as strong as
    the one before, shared by all channels; a gentler gradient per channel
    gives the colour; sensor grain is per pixel. The fine octaves and the
    grain are what make the JPEGs a few MB, as a camera's are.
    """
    import numpy as np

    light = np.zeros((height, width, 1), np.float32)
    for octave, cells in enumerate((4, 16, 64, 256)):
        light += _smooth(rng, width, height, 1, cells, -1, 1) * (0.6**octave)
    light /= max(1e-6, float(np.abs(light).max()))  # the scene spans the whole range
    low, high = base
    middle, spread = (low + high) / 2, (high - low) / 2
    colour = _smooth(rng, width, height, channels, 3, -1, 1) if channels == 3 else 0.0
    grain = rng.standard_normal((height, width, channels), dtype=np.float32)
    return middle + spread * (0.75 * light + 0.25 * colour) + rng.uniform(*noise) * grain


def render(kind, index):
    """One image as file bytes; depends only on (kind, index)."""
    import numpy as np
    from PIL import Image

    _, ext, width, height = KINDS[kind]
    rng = np.random.default_rng([list(KINDS).index(kind), index])
    out = BytesIO()
    if kind == "photo":
        data = pixels(rng, width, height, 3)
        Image.fromarray(np.clip(data, 0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=95)
    elif kind == "scan":
        channels = 1 if index % 2 == 0 else 3
        data = pixels(rng, width, height, channels, base=(150, 250), noise=(3, 8))
        data = np.clip(data, 0, 255).astype(np.uint8)
        image = Image.fromarray(data[:, :, 0], "L") if channels == 1 else Image.fromarray(data, "RGB")
        image.save(out, "PNG", compress_level=1)  # scanners favour speed; still ~lossless size
    else:
        mode, compression = TIFF_VARIANTS[index % len(TIFF_VARIANTS)]
        if mode == "RGB":
            data = np.clip(pixels(rng, width, height, 3), 0, 255).astype(np.uint8)
            image = Image.fromarray(data, "RGB")
        else:
            # 16-bit: the same kind of content spread over about 3,000..55,000.
            data = pixels(rng, width, height, 1)[:, :, 0] * 200 + 3000
            image = Image.fromarray(np.clip(data, 0, 65535).astype("<u2"))  # mode I;16
        image.save(out, "TIFF", compression=compression)
    return out.getvalue()


def _write(task):
    out, kind, index, rel = task
    path = os.path.join(out, rel)
    data = render(kind, index)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


def generate(out, scale=1.0, workers=None):
    """Write the tree under ``out``; return (images, bytes) written."""
    tasks = [(out, kind, index, rel) for kind, index, rel in plan(scale)]
    for name in {os.path.dirname(rel) for *_, rel in tasks}:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        sizes = list(pool.map(_write, tasks))
    return len(sizes), sum(sizes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to create (e.g. data/heavy)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the counts")
    parser.add_argument("--workers", type=int, help="processes (default: all CPUs)")
    args = parser.parse_args(argv)
    images, size = generate(args.out, args.scale, args.workers)
    print(f"wrote {images} images ({size / 1e9:.2f} GB) under {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
