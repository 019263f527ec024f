"""What a job asks for: worker processes, run time and memory, from the plan.

A shard's work is known before it runs: its number of images, the bytes of
its image files and its largest image (the plan stats every file). Slurm
jobs ask for that much time and memory with a margin and a floor, so a
heavy shard asks for enough and a light one does not hoard the queue; each
retry (``attempt``) asks for twice as much again, so a TIMEOUT or
OUT_OF_MEMORY is not repeated as it was. The costs below are deliberately
above what scripts/benchmark.py measures (its "peak memory per shard job"
and "ms/image" lines), so the margin covers slower disks and nodes.
"""

import math

# Seconds per image on top of decoding: open, convert, histogram, the
# per-image file and the journal (a 64x64 JPEG takes ~0.25 ms in all).
SECONDS_PER_IMAGE = 0.001
# Decoding: a 2000x2000 camera JPEG (~5 MB) takes ~32 ms, ~6 ms per MB.
SECONDS_PER_MB = 0.02
# A Slurm job's own start: two Snakemake starts and an srun step.
SECONDS_TO_START = 30
RUNTIME_FLOOR_MIN = 2  # the cluster guide's `-t 2`

# Memory of one measuring process before any image: Python, Pillow, rows.
MB_PER_PROCESS = 80
# Decoded pixels per byte of image file, a generous worst case of common
# files (a camera JPEG decodes to ~3x its size, a well-compressed one to
# ~10x, plus the greyscale copy); an uncompressed TIFF needs far less.
DECODED_PER_BYTE = 16
MEM_FLOOR_MB = 500

# The jobs after the shards hold every row in pandas (~1 KB per image with
# the figures' arrays) on top of pandas and matplotlib themselves.
FINAL_BASE_MB = 400
FINAL_MB_PER_IMAGE = 0.002
FINAL_SECONDS_PER_IMAGE = 0.0002
FINAL_RUNTIME_FLOOR_MIN = 10


def shard_runtime_min(images, total_bytes, workers, attempt=1):
    seconds = SECONDS_TO_START + (images * SECONDS_PER_IMAGE + total_bytes / 1e6 * SECONDS_PER_MB) / workers
    return max(RUNTIME_FLOOR_MIN, math.ceil(3 * seconds / 60)) * 2 ** (attempt - 1)


def shard_mem_mb(images, largest_bytes, workers, attempt=1):
    processes = workers + (1 if workers > 1 else 0)  # the pool's parent holds the rows
    need = MB_PER_PROCESS * processes + workers * DECODED_PER_BYTE * largest_bytes / 1e6 + images * 0.001
    return max(MEM_FLOOR_MB, math.ceil(need)) * 2 ** (attempt - 1)


def final_mem_mb(images, attempt=1):
    return math.ceil(FINAL_BASE_MB + images * FINAL_MB_PER_IMAGE) * 2 ** (attempt - 1)


def final_runtime_min(images, attempt=1):
    minutes = math.ceil(3 * images * FINAL_SECONDS_PER_IMAGE / 60)
    return max(FINAL_RUNTIME_FLOOR_MIN, minutes) * 2 ** (attempt - 1)


def threads_for_shards(weights, cores):
    """Worker processes per shard for a local run on ``cores`` cores.

    With at least as many shards as cores, each shard is one process and
    the cores run shards side by side. With fewer, the cores are divided
    among the shards (the heavier ones get the odd cores), so a run of one
    heavy shard still uses every core. ``weights``: shard -> bytes.
    """
    count = len(weights)
    if not cores or count >= cores:
        return dict.fromkeys(weights, 1)
    base, extra = divmod(cores, count)
    heaviest = sorted(weights, key=lambda name: (-weights[name], name))
    return {name: base + (1 if rank < extra else 0) for rank, name in enumerate(heaviest)}
