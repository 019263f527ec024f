"""Finding images three ways, and cutting them into stable shards."""

import os

import pytest

from imagestats.plan import (
    ConfigError,
    Entry,
    find_images,
    make_shards,
    read_shard_list,
    shard_list_text,
    stats_file_key,
)

DEFAULTS = {"extensions": [".jpg", ".jpeg", ".png"], "images_per_job": 10}


def config(**keys):
    return {**DEFAULTS, "input_dir": None, "manifest": None, "numbered": None, **keys}


def paths(entries):
    return [e.path for e in entries]


# ------------------------------------------------------------ input_dir


def test_folder_is_searched_recursively_case_insensitively(tmp_path):
    for name in ["a/x.jpg", "a/b/y.JPEG", "z.PNG", "notes.txt", "a/b/c/deep.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    source, entries = find_images(config(input_dir=str(tmp_path)))
    assert paths(entries) == ["a/b/c/deep.jpg", "a/b/y.JPEG", "a/x.jpg", "z.PNG"]
    assert all(os.path.isabs(e.file) and os.path.exists(e.file) for e in entries)
    assert "input_dir" in source


def test_folder_counts_every_eurosat_image(small_tree):
    _, entries = find_images(config(input_dir=str(small_tree)))
    assert len(entries) == 40
    assert "Forest/Forest_1.jpg" in paths(entries)


def test_extensions_choose_files(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    _, entries = find_images(config(input_dir=str(tmp_path), extensions=[".TIF"]))
    assert paths(entries) == ["a.tif"]


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
    _, entries = find_images(config(manifest=str(manifest)), workdir=str(elsewhere))
    assert paths(entries) == listed
    assert all(e.file.startswith(str(small_tree)) for e in entries)


def test_manifest_absolute_lines_and_duplicates(small_tree, tmp_path):
    forest = sorted(str(p) for p in (small_tree / "Forest").iterdir())
    manifest = tmp_path / "files.txt"
    manifest.write_text("\n".join(forest + forest[:1]) + "\n")
    _, entries = find_images(config(manifest=str(manifest)))
    assert paths(entries) == forest  # listed twice, measured once


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
    _, entries = find_images(config(input_dir=str(small_tree), manifest=str(manifest)))
    assert len(entries) == 1


# ------------------------------------------------------------- numbered


def test_numbered_pattern(small_tree):
    numbered = {"pattern": "EuroSAT_RGB/Residential/Residential_{n}.jpg", "first": 1, "last": 4}
    _, entries = find_images(config(numbered=numbered), workdir=str(small_tree.parent))
    assert paths(entries) == [f"EuroSAT_RGB/Residential/Residential_{n}.jpg" for n in range(1, 5)]


def test_numbered_missing_numbers_are_listed_as_ranges(tree):
    (tree / "Forest" / "Forest_2.jpg").unlink()  # the tree has Forest_1..3
    numbered = {"pattern": str(tree / "Forest" / "Forest_{n}.jpg"), "first": 1, "last": 9}
    with pytest.raises(ConfigError, match=r"missing 7 of 9 files, numbers 2, 4-9"):
        find_images(config(numbered=numbered))


def test_numbered_zero_padded(tmp_path):
    for n in (7, 8):
        (tmp_path / f"img_{n:04d}.png").write_bytes(b"x")
    numbered = {"pattern": str(tmp_path / "img_{n:04d}.png"), "first": 7, "last": 8}
    _, entries = find_images(config(numbered=numbered))
    assert [os.path.basename(p) for p in paths(entries)] == ["img_0007.png", "img_0008.png"]


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


def fake_entries(n, prefix="img"):
    return [Entry(f"{prefix}/{prefix}_{i}.jpg", f"/data/{prefix}_{i}.jpg", 1, 1) for i in range(n)]


def members(shards):
    return {name: paths(entries) for name, entries in shards.items()}


@pytest.mark.parametrize("per_job", [1, 7, 100, 1000])
def test_every_image_in_exactly_one_shard_of_at_most_images_per_job(per_job):
    entries = fake_entries(2000)
    shards = make_shards(entries, per_job)
    all_paths = [p for ps in members(shards).values() for p in ps]
    assert sorted(all_paths) == sorted(paths(entries))
    assert max(len(v) for v in shards.values()) <= per_job
    if per_job > 1:  # shards are not tiny: at least a quarter full on average
        assert len(entries) / len(shards) >= per_job / 4


def test_shards_depend_only_on_the_set_of_paths():
    entries = fake_entries(500)
    assert members(make_shards(entries, 40)) == members(make_shards(entries[::-1], 40))


def test_adding_an_image_changes_only_the_shard_it_lands_in():
    entries = fake_entries(3000)
    before = members(make_shards(entries, 100))
    new = Entry("img/new_image.jpg", "/data/new_image.jpg", 1, 1)
    after = members(make_shards(entries + [new], 100))
    changed_before = {n for n in before if after.get(n) != before[n]}
    changed_after = {n for n in after if before.get(n) != after[n]}
    assert len(changed_before) == 1  # the one shard the image hashed into
    assert any("img/new_image.jpg" in after[n] for n in changed_after)
    assert len(changed_after) in (1, 2)  # the same shard, or its two halves if it split


def test_shard_list_round_trips_awkward_names(tmp_path):
    entries = [
        Entry(p, "/x/" + p, 3, 4)
        for p in ["a b.jpg", 'q"uote.jpg', "com,ma.jpg", "ünï ✓.jpg", "new\nline.jpg", "tab\t.jpg"]
    ]
    file = tmp_path / "list.jsonl"
    file.write_text(shard_list_text(entries), encoding="utf-8")
    assert read_shard_list(file) == entries


def test_stats_file_key_stays_inside_results():
    assert stats_file_key("Forest/Forest_1.jpg") == "Forest/Forest_1.jpg"
    assert stats_file_key("/data/EuroSAT/Forest/Forest_1.jpg") == "data/EuroSAT/Forest/Forest_1.jpg"
    assert stats_file_key("../other/./x.jpg") == "__/other/x.jpg"
