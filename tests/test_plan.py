"""Finding images three ways, and cutting them into stable shards."""

import concurrent.futures
import os

import pytest

from imagestats.plan import (
    MB,
    ConfigError,
    find_images,
    make_plan,
    read_shard_list,
    stats_file_key,
    write_plan,
)

DEFAULTS = {"extensions": [".jpg", ".jpeg", ".png"], "images_per_job": 10}


def config(**keys):
    return {**DEFAULTS, "input_dir": None, "manifest": None, "numbered": None, **keys}


def paths(images):
    """The paths of find_images' selection, sorted (it keeps the walk's order)."""
    return sorted(images.paths)


def files(images):
    return [os.path.join(images.root, p) for p in images.paths]


# ------------------------------------------------------------ input_dir


def test_folder_is_searched_recursively_case_insensitively(tmp_path):
    for name in ["a/x.jpg", "a/b/y.JPEG", "z.PNG", "notes.txt", "a/b/c/deep.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    images = find_images(config(input_dir=str(tmp_path)))
    assert paths(images) == ["a/b/c/deep.jpg", "a/b/y.JPEG", "a/x.jpg", "z.PNG"]
    assert all(os.path.isabs(f) and os.path.exists(f) for f in files(images))
    assert "input_dir" in images.source


def test_folder_counts_every_eurosat_image(small_tree):
    images = find_images(config(input_dir=str(small_tree)))
    assert len(images) == 40
    assert "Forest/Forest_1.jpg" in paths(images)


def test_extensions_choose_files(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    images = find_images(config(input_dir=str(tmp_path), extensions=[".TIF"]))
    assert paths(images) == ["a.tif"]


def test_missing_folder_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match="input_dir '.*nope' is not a folder: set input_dir"):
        find_images(config(input_dir=str(tmp_path / "nope")))


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ConfigError, match="selects no images"):
        find_images(config(input_dir=str(tmp_path)))


def test_nothing_selected_is_an_error():
    with pytest.raises(ConfigError, match="set 'input_dir', 'manifest' or 'numbered'"):
        find_images(config())


# ------------------------------------------------------------- manifest


def test_manifest_lines_are_relative_to_its_folder(small_tree, tmp_path):
    # The guide: ls EuroSAT_RGB/Residential/*.jpg | sort > residential_files.txt
    listed = sorted(f"EuroSAT_RGB/Residential/{p.name}" for p in (small_tree / "Residential").iterdir())
    manifest = small_tree.parent / "residential_files.txt"
    manifest.write_text("\n".join(listed) + "\n\n# a comment\n")
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    images = find_images(config(manifest=str(manifest)), workdir=str(elsewhere))
    assert paths(images) == listed
    assert all(os.path.normpath(f).startswith(str(small_tree)) for f in files(images))


def test_manifest_absolute_lines_and_duplicates(small_tree, tmp_path):
    forest = sorted(str(p) for p in (small_tree / "Forest").iterdir())
    manifest = tmp_path / "files.txt"
    manifest.write_text("\n".join(forest + forest[:1]) + "\n")
    images = find_images(config(manifest=str(manifest)))
    assert paths(images) == forest  # listed twice, measured once


def test_manifest_missing_files_are_listed(small_tree, tmp_path):
    manifest = tmp_path / "files.txt"
    manifest.write_text(f"{small_tree}/Forest/Forest_1.jpg\nnot/there.jpg\nalso_gone.jpg\n")
    with pytest.raises(ConfigError, match=r"lists 2 missing file\(s\): 'not/there.jpg', 'also_gone.jpg'"):
        find_images(config(manifest=str(manifest)))


def test_manifest_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match="manifest '.*files.txt' cannot be read"):
        find_images(config(manifest=str(tmp_path / "files.txt")))


def test_manifest_wins_over_input_dir(small_tree, tmp_path):
    manifest = tmp_path / "files.txt"
    manifest.write_text(f"{small_tree}/River/River_2.jpg\n")
    images = find_images(config(input_dir=str(small_tree), manifest=str(manifest)))
    assert len(images) == 1


# ------------------------------------------------------------- numbered


def test_numbered_pattern(small_tree):
    numbered = {"pattern": "EuroSAT_RGB/Residential/Residential_{n}.jpg", "first": 1, "last": 4}
    images = find_images(config(numbered=numbered), workdir=str(small_tree.parent))
    assert paths(images) == [f"EuroSAT_RGB/Residential/Residential_{n}.jpg" for n in range(1, 5)]


def test_numbered_missing_numbers_are_listed_as_ranges(tree):
    (tree / "Forest" / "Forest_2.jpg").unlink()  # the tree has Forest_1..3
    numbered = {"pattern": str(tree / "Forest" / "Forest_{n}.jpg"), "first": 1, "last": 9}
    with pytest.raises(ConfigError, match=r"missing 7 of 9 files, numbers 2, 4-9"):
        find_images(config(numbered=numbered))


def test_numbered_zero_padded(tmp_path):
    for n in (7, 8):
        (tmp_path / f"img_{n:04d}.png").write_bytes(b"x")
    numbered = {"pattern": str(tmp_path / "img_{n:04d}.png"), "first": 7, "last": 8}
    images = find_images(config(numbered=numbered))
    assert [os.path.basename(p) for p in paths(images)] == ["img_0007.png", "img_0008.png"]


@pytest.mark.parametrize(
    "numbered, message",
    [
        ({"pattern": "a_{n}.jpg", "first": 5, "last": 1}, "is after last"),
        ({"pattern": "a.jpg", "first": 1, "last": 2}, "has no '{n}' placeholder"),
        ({"pattern": "a_{i}.jpg", "first": 1, "last": 2}, "must contain '{n}'"),
    ],
)
def test_numbered_bad_patterns(numbered, message):
    with pytest.raises(ConfigError, match=message):
        find_images(config(numbered=numbered))


def test_manifest_and_numbered_together_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="both 'manifest' and 'numbered'"):
        find_images(config(manifest="m.txt", numbered={"pattern": "{n}", "first": 1, "last": 1}))


# --------------------------------------------------------------- shards


def fake_tree(root, n, size=1, prefix="img"):
    """n files of ``size`` bytes (sparse, so big ones cost no disk)."""
    folder = root / prefix
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        with open(folder / f"{prefix}_{i}.jpg", "wb") as f:
            f.truncate(size)
    return root


def members(plan):
    return {name: sorted(plan.selection.paths[i] for i in plan.members(name).tolist()) for name in plan.shards}


def shards_of(root, per_job, mb=1000, **keys):
    return make_plan(config(input_dir=str(root), images_per_job=per_job, mb_per_job=mb, **keys))


@pytest.mark.parametrize("per_job", [1, 7, 100, 1000])
def test_every_image_in_exactly_one_shard_of_at_most_images_per_job(tmp_path, per_job):
    plan = shards_of(fake_tree(tmp_path, 2000), per_job)
    all_paths = [p for ps in members(plan).values() for p in ps]
    assert sorted(all_paths) == sorted(plan.selection.paths)
    assert max(s.images for s in plan.shards.values()) <= per_job
    assert sum(s.images for s in plan.shards.values()) == 2000
    if per_job > 1:  # shards are not tiny: at least a quarter full on average
        assert 2000 / len(plan.shards) >= per_job / 4


def test_shards_depend_only_on_the_set_of_paths(tmp_path):
    root = fake_tree(tmp_path / "a", 500)
    again = fake_tree(tmp_path / "b", 500)  # same names, another folder, other order on disk
    assert members(shards_of(root, 40)) == members(shards_of(again, 40))


def test_adding_an_image_changes_only_the_shard_it_lands_in(tmp_path):
    root = fake_tree(tmp_path, 3000)
    before = shards_of(root, 100)
    (root / "img" / "new_image.jpg").write_bytes(b"x")
    after = shards_of(root, 100)
    old, new = members(before), members(after)
    changed_before = {n for n in old if new.get(n) != old[n]}
    changed_after = {n for n in new if old.get(n) != new[n]}
    assert len(changed_before) == 1  # the one shard the image hashed into
    assert any("img/new_image.jpg" in new[n] for n in changed_after)
    assert len(changed_after) in (1, 2)  # the same shard, or its two halves if it split
    # every other shard keeps its list, byte for byte (the same file name)
    unchanged = set(new) - changed_after
    assert {before.shards[n].list_name for n in unchanged} == {after.shards[n].list_name for n in unchanged}


def test_changing_an_image_renames_only_its_list(tmp_path):
    root = fake_tree(tmp_path, 300)
    before = shards_of(root, 50)
    target = root / "img" / "img_7.jpg"
    os.utime(target, ns=(1, 10**18))
    after = shards_of(root, 50)
    renamed = {n for n in after.shards if after.shards[n].list_name != before.shards[n].list_name}
    assert len(renamed) == 1
    assert "img/img_7.jpg" in members(after)[renamed.pop()]


def test_heavy_images_are_cut_by_bytes(tmp_path):
    root = fake_tree(tmp_path, 40, size=30 * MB)  # 1.2 GB of "camera" files, sparse on disk
    plan = shards_of(root, 4000, mb=200)
    assert len(plan.shards) > 1  # one count-limited shard would hold all 40
    assert all(s.bytes <= 200 * MB for s in plan.shards.values())
    assert sum(s.bytes for s in plan.shards.values()) == 40 * 30 * MB
    assert all(s.largest == 30 * MB for s in plan.shards.values())
    # an image larger than the limit is a shard of its own, not an error
    alone = shards_of(root, 4000, mb=10)
    assert len(alone.shards) == 40 and {s.images for s in alone.shards.values()} == {1}


def test_small_images_keep_their_count_shards(small_tree):
    """64x64 EuroSAT images weigh ~2 kB: the byte limit changes no shard."""
    by_count = shards_of(small_tree, 7, mb=10**9)
    both = shards_of(small_tree, 7)
    assert members(by_count) == members(both)


def test_shard_list_round_trips_awkward_names(tmp_path):
    names = ["a b.jpg", 'q"uote.jpg', "com,ma.jpg", "ünï ✓.jpg", "new\nline.jpg", "tab\t.jpg",
             os.fsdecode(b"caf\xe9.jpg"), 'x", "y.jpg', "back\\slash.jpg"]  # fmt: skip
    root = tmp_path / "images"
    root.mkdir()
    for i, name in enumerate(names):
        (root / os.fsencode(name).decode("utf-8", "surrogateescape")).write_bytes(b"x" * i)
    plan = make_plan(config(input_dir=str(root), extensions=[".jpg"]))
    write_plan(plan, tmp_path / "plan")
    (shard,) = plan.shards.values()
    entries = read_shard_list(tmp_path / "plan" / shard.list_name, plan.root)
    assert sorted((e.path, e.size) for e in entries) == sorted((n, i) for i, n in enumerate(names))
    assert all(os.path.exists(e.file) for e in entries)


@pytest.mark.parametrize("awkward", [False, True])
def test_shard_list_text_is_json_dumps_byte_for_byte(tmp_path, awkward):
    """The lists are joined, not json-encoded, when no path needs an escape:
    the same text either way (a list's name is a hash of its images, its
    text must not change between versions)."""
    import json

    from imagestats.plan import shard_list_text

    names = [f"d{i % 3}/img {i} ünï ✓.jpg" for i in range(40)] + [os.fsdecode(b"caf\xe9.jpg")]
    if awkward:
        names.append('q"uote\\.jpg')
    root = tmp_path / "images"
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * i)
    plan = make_plan(config(input_dir=str(root), extensions=[".jpg"], images_per_job=7))
    assert len(plan.shards) > 3
    images = plan.selection
    for name in plan.shards:
        members = plan.members(name).tolist()
        want = json.dumps(
            {
                "paths": [images.paths[i] for i in members],
                "sizes": [int(images.sizes[i]) for i in members],
                "mtimes_ns": [int(images.mtimes[i]) for i in members],
            },
            ensure_ascii=False,
        ) + "\n"
        assert shard_list_text(plan, name) == want


def test_stats_file_key_stays_inside_results():
    assert stats_file_key("Forest/Forest_1.jpg") == "Forest/Forest_1.jpg"
    assert stats_file_key("/data/EuroSAT/Forest/Forest_1.jpg") == "data/EuroSAT/Forest/Forest_1.jpg"
    assert stats_file_key("../other/./x.jpg") == "__/other/x.jpg"


# ---------------------------------------------------------- folder links


def test_a_link_loop_is_walked_once_with_one_warning(tmp_path):
    root = fake_tree(tmp_path / "images", 3)
    os.symlink("..", root / "img" / "up")  # img/up -> images
    images = find_images(config(input_dir=str(root)))
    assert paths(images) == ["img/img_0.jpg", "img/img_1.jpg", "img/img_2.jpg"]
    assert len(images.warnings) == 1
    assert "folder link 'img/up' leads to '.'" in images.warnings[0]


def test_a_second_link_to_a_walked_folder_lists_its_images_once(tmp_path):
    root = fake_tree(tmp_path / "images", 2)
    os.symlink(root / "img", root / "again")
    outside = fake_tree(tmp_path / "outside", 1, prefix="far")
    os.symlink(outside / "far", root / "far")  # a link out of the tree is walked
    images = find_images(config(input_dir=str(root)))
    assert paths(images) == ["far/far_0.jpg", "img/img_0.jpg", "img/img_1.jpg"]
    assert images.warnings == [
        "folder link 'again' leads to 'img', which is already walked: its images are "
        "listed once, under that folder"
    ]


# ------------------------------------------------------- walking threads


@pytest.mark.parametrize("network", [False, True])
def test_the_walk_finds_the_same_with_threads_or_without(tmp_path, monkeypatch, network):
    """Threads walk a network filesystem; a local one is walked in this
    thread. Both list every image, sizes and mtimes included, and name an
    unreadable folder."""
    from imagestats import plan, storage

    root = tmp_path / "images"
    for i in range(6):
        folder = root / f"c{i}" / "deep"
        folder.mkdir(parents=True)
        for j in range(i + 1):
            (folder / f"x{j}.jpg").write_bytes(b"x" * (j + 1))
    os.symlink("../..", root / "c0" / "deep" / "up")
    monkeypatch.setattr(storage, "on_network_filesystem", lambda path: network)
    pools = []

    class CountedPool(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, workers):
            pools.append(workers)
            super().__init__(workers)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", CountedPool)
    images = find_images(config(input_dir=str(root)))
    assert pools == ([plan.WALK_THREADS] if network else [])
    got = sorted(zip(images.paths, images.sizes.tolist(), images.mtimes.tolist()))
    want = sorted((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in root.rglob("*.jpg"))
    assert got == want and len(got) == 21
    assert len(images.warnings) == 1
    if os.geteuid() != 0:  # root reads any folder
        (root / "c3").chmod(0)
        try:
            with pytest.raises(ConfigError, match="cannot list folder .*c3"):
                find_images(config(input_dir=str(root)))
        finally:
            (root / "c3").chmod(0o755)


def test_a_helper_process_stats_half_of_a_big_local_walk(tmp_path, monkeypatch):
    """From plan.STAT_HELPER_MIN images on, a helper process stats the
    second half: the same paths, sizes and mtimes in the same order,
    broken links and awkward names included; if the helper cannot start
    or fails, the walk stats that half itself."""
    import subprocess

    from imagestats import plan

    root = tmp_path / "images"
    for i in range(5):
        folder = root / f"c{i}" / "d\u00e9ep"
        folder.mkdir(parents=True)
        for j in range(i + 2):
            (folder / f"x {j}\n.jpg").write_bytes(b"x" * (j + 1))
    os.symlink("nowhere.jpg", root / "c2" / "broken.jpg")
    (root / os.fsdecode(b"odd\xff.jpg")).write_bytes(b"yy")
    cfg = config(input_dir=str(root))
    monkeypatch.setattr(plan, "STAT_HELPER_MIN", 10**9)
    alone = find_images(cfg)
    seen = []
    real = subprocess.Popen

    def counted(*args, **kwargs):
        seen.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counted)
    monkeypatch.setattr(plan, "STAT_HELPER_MIN", 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)

    def same(images):
        assert images.paths == alone.paths and len(images.paths) == 22
        assert images.sizes.tolist() == alone.sizes.tolist()
        assert images.mtimes.tolist() == alone.mtimes.tolist()
        if images.hashes is not None:  # made by the walk and the helper, half each
            assert images.hashes.tolist() == plan.path_hashes(images.paths).tolist()

    assert alone.hashes is None
    helped = find_images(cfg)
    same(helped)
    assert len(seen) == 1 and helped.hashes is not None
    failing = tmp_path / "failing_helper.py"
    failing.write_text("import sys; sys.exit(3)")
    monkeypatch.setattr(plan, "STAT_HELPER", str(failing))  # fails: stat'ed here
    same(find_images(cfg))

    def refused(*args, **kwargs):
        raise OSError("no more processes")

    monkeypatch.setattr(subprocess, "Popen", refused)
    same(find_images(cfg))


def test_network_filesystems_are_told_by_the_mount_table(tmp_path):
    from imagestats.storage import _mount_point, on_network_filesystem

    mount = _mount_point(tmp_path)
    table = tmp_path / "mounts"
    for lines, network in [
        ([f"server:/home {mount} nfs4 rw 0 0"], True),
        ([f"/dev/sda1 {mount} ext4 rw 0 0"], False),
        ([f"fs@o2ib:/scratch {mount} lustre rw 0 0"], True),
        ([f"sshfs#me@host: {mount} fuse.sshfs rw 0 0"], True),
        ([f"server:/home {mount} nfs rw 0 0", f"overlay {mount} overlay rw 0 0"], False),  # the last one counts
        (["/dev/sda1 /elsewhere-entirely ext4 rw 0 0"], False),
    ]:
        table.write_text("\n".join(lines) + "\n")
        assert on_network_filesystem(tmp_path, mounts=table) is network, lines
    assert on_network_filesystem(tmp_path, mounts=tmp_path / "none") is False
