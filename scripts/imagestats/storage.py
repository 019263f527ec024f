"""How many files and bytes a run creates, and whether there is room for them.

A million images are a million per-image files under results/images/: more
than many home and project quotas allow in inodes. The plan counts what the
jobs still due will create under results/ and logs/ and compares it with the
free inodes and space of that filesystem (os.statvfs) and with the user's
quota where `lfs quota` (Lustre) or `quota` answers; a run that would not
fit stops before any job, saying what to change.
"""

import getpass
import os
import subprocess
from dataclasses import dataclass, field

from .progress import format_duration

# Bytes of one stats row (a table line, and a per-image file): ~300 for a
# EuroSAT name, more for long paths and error texts.
BYTES_PER_ROW = 330
# A shard's table and CSV lines, list, log, journal folder, kept table and
# lock, and Snakemake's metadata records of its table and CSV lines.
FILES_PER_SHARD = 9
# stats.csv, summary, errors, two HTML views, three plots, their logs,
# benchmarks, metadata records and the folders that hold them.
FINAL_FILES = 40
FINAL_BYTES = 1_000_000  # the plots (~300 kB) and the rest, with room


@dataclass
class Room:
    files: int  # free inodes
    bytes: int
    what: str  # e.g. "filesystem of /scratch/run" or "quota of bob on /scratch"


@dataclass
class StoragePlan:
    folder: str
    files: int
    bytes: int
    rooms: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def short(self):
        """The rooms that are too small: [(Room, 'inodes'|'space')]."""
        out = []
        for room in self.rooms:
            if room.files is not None and self.files > room.files:
                out.append((room, "inodes"))
            if room.bytes is not None and self.bytes > room.bytes:
                out.append((room, "space"))
        return out

    def describe(self):
        lines = [
            "Storage plan",
            f"  creates            {self.files:,} files, {_size(self.bytes)} under results/ and logs/",
        ]
        for room in self.rooms:
            files = "unlimited" if room.files is None else f"{room.files:,}"
            space = "unlimited" if room.bytes is None else _size(room.bytes)
            lines.append(f"  free               {files} inodes, {space} ({room.what})")
        lines.extend(f"  note               {note}" for note in self.notes)
        return "\n".join(lines)

    def verdict(self):
        if not self.short:
            return None
        room, what = self.short[0]
        need = f"{self.files:,} files" if what == "inodes" else _size(self.bytes)
        have = f"{room.files:,} free inodes" if what == "inodes" else f"{_size(room.bytes)} free"
        return (
            f"not enough {what} for this run: it creates {need} under results/ and logs/, "
            f"the {room.what} has {have}. Set per_image_files: false in the config (the "
            "shard tables and stats.csv hold the same rows) to create one file per shard "
            "instead of one per image, free some space, or run in a folder with room "
            "(snakemake -d DIR). Nothing was run."
        )


def _size(n):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def estimate(folder, due_images, due_shards, per_image_files, block=None, image_folders=0,
             transformed=()):  # fmt: skip
    """Files and bytes the due work creates; each file takes at least a
    whole filesystem block (``block``: the filesystem's, from statvfs).
    ``image_folders``: folders under results/images/ (one per image folder).
    ``transformed``: the bytes of each image an analysis returns per image
    (a PNG under results/transformed/<column>/ each, folders mirrored)."""
    if block is None:
        st = _statvfs(folder)
        block = st.f_frsize if st else 4096
    files = due_shards * FILES_PER_SHARD + FINAL_FILES
    # tables, the shards' CSV lines and stats.csv hold every row; each shard
    # file takes a block or more
    size = due_images * BYTES_PER_ROW * 3 + due_shards * FILES_PER_SHARD * block + FINAL_BYTES
    if per_image_files:
        files += due_images + image_folders
        size += (due_images * _blocks(BYTES_PER_ROW, block) + image_folders) * block
    for png in transformed:
        files += due_images + image_folders
        size += (due_images * _blocks(png, block) + image_folders) * block
    return files, size


def _blocks(size, block):
    return max(1, -(-int(size) // block))


def _statvfs(folder):
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        return os.statvfs(probe)
    except OSError:
        return None


def filesystem_room(folder):
    st = _statvfs(folder)
    if st is None:
        return None
    files = st.f_favail if st.f_files else None  # some filesystems report no inode limit
    return Room(files, st.f_bavail * st.f_frsize, f"filesystem of {os.path.abspath(folder)}")


def _mount_point(path):
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


# Filesystems whose every stat waits on the network: there a walk gains from
# threads (see plan.WALK_THREADS). fuse.* covers sshfs, glusterfs, ...
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph",
                       "panfs", "wekafs", "afs", "orangefs", "pvfs2", "9p"}  # fmt: skip


def filesystem_kind(path, mounts="/proc/mounts"):
    """(type, mount point) of the filesystem ``path`` lies on, by the mount
    table; the type is None where it cannot be read."""
    mount = _mount_point(path)
    kind = None
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == mount:
                    kind = parts[2]  # the last mount on a point is the one seen
    except OSError:
        pass
    return kind, mount


def is_network(kind):
    return kind is not None and (kind in NETWORK_FILESYSTEMS or kind.startswith("fuse."))


def on_network_filesystem(path, mounts="/proc/mounts"):
    """Whether ``path`` lies on a network filesystem, by the mount table
    (False where it cannot be read)."""
    return is_network(filesystem_kind(path, mounts)[0])


# What a metadata operation costs on a network filesystem: Lustre, one
# client thread (mdtest and vendors' reports): a create 0.9-2 ms, a stat
# about 0.5 ms (2,000/s); NFS is of the same order. A local disk: ~2 us.
CREATE_SECONDS = 0.0015
STAT_SECONDS = 0.0005


def metadata_notes(results, images_root, due_images, per_image_files, measuring_seconds, transformed=0,
                   mounts="/proc/mounts", walk_threads=4):  # fmt: skip
    """Lines for the storage plan when the results or the images lie on a
    network filesystem: what the per-image files (and transformed images)
    cost the metadata server, what reading the images costs (an open and a
    stat each), beside the measuring the run expects (``measuring_seconds``
    of CPU); and the advice to drop the per-image files when they cost more
    than the measuring. Empty on a local disk."""
    notes = []
    kind, mount = filesystem_kind(results, mounts)
    if is_network(kind) and due_images:
        files = due_images * (int(bool(per_image_files)) + transformed)
        create = files * CREATE_SECONDS
        if files:
            notes.append(
                f"metadata: {kind} at {mount}: the {files:,} per-image files cost ~{format_duration(create)} of "
                f"metadata-server time (~{CREATE_SECONDS * 1000:g} ms per create), beside ~{format_duration(measuring_seconds)} "
                "of measuring"
            )
            if per_image_files and due_images * CREATE_SECONDS > measuring_seconds:
                notes.append(
                    "metadata: the per-image files cost more than the measuring: set per_image_files: false "
                    "in the config (the shard tables and stats.csv hold the same rows)"
                )
    kind, mount = filesystem_kind(images_root, mounts) if images_root else (None, None)
    if is_network(kind) and due_images:
        notes.append(
            f"metadata: the images are on {kind} at {mount}: planning stats each (~{format_duration(due_images * STAT_SECONDS / walk_threads)} "
            f"with {walk_threads} threads, every run), measuring opens and stats each (~{format_duration(due_images * 2 * STAT_SECONDS)} "
            "of round trips, spread over the shard jobs)"
        )
    return notes


def _run(cmd, ok=(0,)):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode in ok else None


def _number(text):
    text = text.rstrip("*")
    return int(text) if text.isdigit() else None


def _free(used, soft, hard):
    """What is left below the lower limit that is set (0 means none)."""
    limits = [x for x in (soft, hard) if x]
    return None if not limits or used is None else max(0, min(limits) - used)


def lfs_quota(folder, user):
    """Room left in the user's Lustre quota on the filesystem of ``folder``."""
    mount = _mount_point(folder)
    out = _run(["lfs", "quota", "-q", "-u", user, mount])
    if not out:
        return None
    lines = out.splitlines()
    for number, line in enumerate(lines):
        parts = line.split()
        # Filesystem kbytes quota limit grace files quota limit grace; a long
        # mount path stands on a line of its own, the numbers on the next.
        if parts == [mount] and number + 1 < len(lines):
            parts = [mount, *lines[number + 1].split()]
        if len(parts) >= 8 and parts[0] == mount:
            used_kb, soft_kb, hard_kb = (_number(p) for p in parts[1:4])
            used_f, soft_f, hard_f = (_number(p) for p in parts[5:8])
            space = _free(used_kb, soft_kb, hard_kb)
            return Room(_free(used_f, soft_f, hard_f), None if space is None else space * 1024,
                        f"Lustre quota of {user} on {mount}")  # fmt: skip
    return None


def disk_quota(folder, user):
    """Room left in the user's quota (`quota`) on the filesystem of ``folder``."""
    mount = _mount_point(folder)
    out = _run(["quota", "-w", "-u", user], ok=(0, 1))  # 1: some quota is exceeded
    if not out:
        return None
    devices = {mount}
    try:
        with open("/proc/mounts") as f:
            devices |= {line.split()[0] for line in f if line.split()[1] == mount}
    except OSError:
        pass
    for line in out.splitlines():
        parts = line.split()
        # Filesystem blocks quota limit [grace] files quota limit [grace]
        if len(parts) >= 7 and parts[0] in devices:
            numbers = [p for p in parts[1:] if _number(p) is not None]
            if len(numbers) < 6:
                continue
            used_kb, soft_kb, hard_kb, used_f, soft_f, hard_f = (_number(p) for p in numbers[:6])
            space = _free(used_kb, soft_kb, hard_kb)
            return Room(_free(used_f, soft_f, hard_f), None if space is None else space * 1024,
                        f"quota of {user} on {mount}")  # fmt: skip
    return None


def storage_plan(folder, due_images, due_shards, per_image_files, image_folders=0, transformed=None,
                 images_root=None, measuring_seconds=0.0, mounts="/proc/mounts"):  # fmt: skip
    """``transformed``: {column: estimated PNG bytes per image} of the images
    the analysis returns (imagestats.analysis.Analysis.probe);
    ``images_root``, ``measuring_seconds``: where the images are and the
    CPU seconds measuring them takes (for metadata_notes)."""
    transformed = transformed or {}
    files, size = estimate(folder, due_images, due_shards, per_image_files, image_folders=image_folders,
                           transformed=transformed.values())  # fmt: skip
    plan = StoragePlan(folder, files, size)
    for column, png in transformed.items():
        plan.notes.append(
            f"of which {due_images:,} PNG images of column {column} under results/transformed/{column}/, "
            f"~{_size(png)} each"
        )
    plan.notes.extend(metadata_notes(folder, images_root, due_images, per_image_files, measuring_seconds,
                                     len(transformed), mounts))  # fmt: skip
    room = filesystem_room(folder)
    if room is not None:
        plan.rooms.append(room)
    user = getpass.getuser()
    quota = lfs_quota(folder, user) or disk_quota(folder, user)
    if quota is not None:
        plan.rooms.append(quota)
    else:
        plan.notes.append("no quota reported (neither `lfs quota` nor `quota` answered)")
    return plan
