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


# A command per image (imagestats.command) before a run has shown its time:
# a Python script's start alone is ~50 ms, and most do more.
SECONDS_PER_COMMAND = 1.0


def shard_runtime_min(images, total_bytes, workers, attempt=1, image_timeout=0, seconds_per_image=None):
    """Minutes: the cost model with a margin, plus one image_timeout (an
    image that hangs is stopped after that long, and the shard goes on).
    ``seconds_per_image``: a command's seconds per image, instead of the
    model's per image and per MB."""
    if seconds_per_image is None:
        work = images * SECONDS_PER_IMAGE + total_bytes / 1e6 * SECONDS_PER_MB
    else:
        work = images * seconds_per_image
    seconds = SECONDS_TO_START + work / workers
    minutes = max(RUNTIME_FLOOR_MIN, math.ceil(3 * seconds / 60)) + math.ceil(image_timeout / 60)
    return minutes * 2 ** (attempt - 1)


def shard_mem_mb(images, largest_bytes, workers, attempt=1):
    processes = workers + (1 if workers > 1 else 0)  # the pool's parent holds the rows
    need = MB_PER_PROCESS * processes + workers * DECODED_PER_BYTE * largest_bytes / 1e6 + images * 0.001
    return max(MEM_FLOOR_MB, math.ceil(need)) * 2 ** (attempt - 1)


def final_mem_mb(images, attempt=1):
    return math.ceil(FINAL_BASE_MB + images * FINAL_MB_PER_IMAGE) * 2 ** (attempt - 1)


def final_runtime_min(images, attempt=1):
    minutes = math.ceil(3 * images * FINAL_SECONDS_PER_IMAGE / 60)
    return max(FINAL_RUNTIME_FLOOR_MIN, minutes) * 2 ** (attempt - 1)


# What a local job costs besides its images: a Python start, imports and
# Snakemake's scheduling round (the benchmark's job timelines: ~0.2 s).
SECONDS_PER_LOCAL_JOB = 0.25


def shard_seconds(images, total_bytes):
    """Estimated measuring time of a shard on one core (the cost model above)."""
    return images * SECONDS_PER_IMAGE + total_bytes / 1e6 * SECONDS_PER_MB


def _side_by_side(seconds, cores):
    """Makespan of shards of one process each, ``cores`` at a time,
    heaviest first (how Snakemake starts them: each as a core frees)."""
    finish = [0.0] * cores
    for work in sorted(seconds, reverse=True):
        finish[finish.index(min(finish))] += work + SECONDS_PER_LOCAL_JOB
    return max(finish)


def threads_for_shards(shards, cores):
    """Worker processes per shard for a local run on ``cores`` cores.

    ``shards``: name -> (images, bytes). Three ways to share the cores:
    - fewer shards than cores: the cores are divided among the shards (the
      heavier get the odd cores), all run at once;
    - shards side by side, one process each: right for many light shards
      (27,000 EuroSAT images make 8 shards of ~1 s on 2 cores);
    - one shard at a time with every core: right for a few heavy shards,
      where side by side would leave cores idle while the last one runs.
    The cheaper of the last two by the cost model wins.
    """
    count = len(shards)
    if not cores or cores == 1:
        return dict.fromkeys(shards, 1)
    if count < cores:
        base, extra = divmod(cores, count)
        heaviest = sorted(shards, key=lambda name: (-shards[name][1], name))
        return {name: base + (1 if rank < extra else 0) for rank, name in enumerate(heaviest)}
    seconds = [shard_seconds(images, size) for images, size in shards.values()]
    one_at_a_time = sum(seconds) / cores + count * SECONDS_PER_LOCAL_JOB
    each = cores if one_at_a_time < _side_by_side(seconds, cores) else 1
    return dict.fromkeys(shards, each)
