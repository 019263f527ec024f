"""A shard measured with one or several processes, and how cores are shared."""

import io
import json
import os
import signal

import numpy as np
from PIL import Image

from conftest import reference, snakemake
from imagestats import shard as shard_module
from imagestats.names import escape
from imagestats.plan import make_plan, read_shard_list, write_plan
from imagestats.resources import shard_mem_mb, shard_runtime_min, threads_for_shards
from imagestats.shard import run_shard, stats_file


def measure_tree(tmp_path, tree, workers, name):
    plan = make_plan({"input_dir": str(tree), "images_per_job": 10_000})
    write_plan(plan, tmp_path / name / "plan")
    (shard,) = plan.shards.values()
    table = tmp_path / name / "shards" / f"{shard.name}.jsonl"
    table.parent.mkdir(parents=True)
    log = io.StringIO()
    run_shard(tmp_path / name / "plan" / shard.list_name, table, tmp_path / name / "images",
              "record", 89478485, log, workers=workers)  # fmt: skip
    files = {p.relative_to(tmp_path / name / "images"): p.read_bytes()
             for p in (tmp_path / name / "images").rglob("*.json")}  # fmt: skip
    return table.read_bytes(), files, log.getvalue()


def test_one_and_several_workers_give_the_same_bytes(small_tree, tmp_path):
    one, one_files, one_log = measure_tree(tmp_path, small_tree, 1, "one")
    three, three_files, three_log = measure_tree(tmp_path, small_tree, 3, "three")
    assert one == three
    assert one_files == three_files and len(one_files) == 40
    assert "1 process(es)" in one_log and "3 process(es)" in three_log


def test_a_per_image_file_cut_short_by_a_kill_is_written_again(small_tree, tmp_path):
    """Per-image files are written in place, before the journal holds their
    row: a kill in the middle of one leaves it cut short, and the rerun
    measures that image again and writes the file whole."""
    plan = make_plan({"input_dir": str(small_tree), "images_per_job": 10_000})
    write_plan(plan, tmp_path / "plan")
    (shard,) = plan.shards.values()
    list_file = tmp_path / "plan" / shard.list_name
    table = tmp_path / "shards" / f"{shard.name}.jsonl"
    table.parent.mkdir()
    images = tmp_path / "images"
    entries = read_shard_list(list_file, small_tree)
    victim = stats_file(str(images), escape(entries[5].path))  # one process: the list's order

    def measure_shard():
        run_shard(list_file, table, str(images), "record", 89478485, io.StringIO(), workers=1)

    pid = os.fork()
    if pid == 0:  # the shard, killed half-way through writing the victim's file
        try:
            real = shard_module.write_in_place

            def cut_short(file, data, name=None, **options):
                if file == victim:
                    real(file, data[: len(data) // 2], **options)
                    os.kill(os.getpid(), signal.SIGKILL)
                real(file, data, name, **options)

            shard_module.write_in_place = cut_short
            measure_shard()
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    # The measuring process is killed; the shard stops on that (WorkerDied).
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1
    with open(victim) as f:
        torn = f.read()
    assert torn and not torn.endswith("\n")  # the premise: cut short under its own name

    log = io.StringIO()
    run_shard(list_file, table, str(images), "record", 89478485, log, workers=1)
    assert "(35 measured, 5 kept)" in log.getvalue()
    rows = {row["path"]: row for row in map(json.loads, table.read_text().splitlines())}
    with open(victim) as f:
        assert json.loads(f.read()) == rows[entries[5].path]


def heavy_images(folder, count=6, size=(2400, 1800)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i}.jpg", quality=90)
    return folder.parent


def test_a_local_run_of_one_heavy_shard_uses_every_core(tmp_path):
    tree = heavy_images(tmp_path / "images" / "Photos")
    result = snakemake(tmp_path / "work", "--cores", "2", "results/stats.csv", config=(f"input_dir={tree}",))
    assert "1 shard(s)" in result.output
    (log,) = (tmp_path / "work" / "logs" / "image_stats").glob("*.log")
    assert "2 process(es)" in log.read_text()
    rows = (tmp_path / "work" / "results" / "stats.csv").read_text().splitlines()[1:]
    for row in rows:
        path, _, _, _, _, low, high, mean, median = row.split(",")[:9]
        assert (int(low), int(high), float(mean), int(median)) == reference(tree / path)


def test_cores_are_shared_between_shards_and_their_processes():
    light = {f"s{i}": (3400, 3400 * 2200) for i in range(8)}  # 27,000 EuroSAT images
    assert set(threads_for_shards(light, 2).values()) == {1}  # side by side
    assert set(threads_for_shards(light, 8).values()) == {1}
    heavy = {f"s{i}": (150, 650_000_000) for i in range(3)}  # 3 shards of camera photos
    assert set(threads_for_shards(heavy, 2).values()) == {2}  # one at a time, every core
    assert threads_for_shards({"a": (30, 66_000)}, 2) == {"a": 2}  # fewer shards than cores
    assert sorted(threads_for_shards({"a": (10, 5), "b": (10, 9)}, 5).values()) == [2, 3]
    assert threads_for_shards(light, 1) == dict.fromkeys(light, 1)


def test_resources_grow_with_the_work_and_with_each_attempt():
    light = shard_runtime_min(3400, 7_500_000, 1), shard_mem_mb(3400, 3000, 1)
    heavy = shard_runtime_min(400, 2_000_000_000, 1), shard_mem_mb(400, 36_000_000, 1)
    assert light == (2, 500)  # the floors: a light shard does not hoard the queue
    assert heavy[0] > light[0] and heavy[1] > light[1]
    assert shard_runtime_min(400, 2_000_000_000, 1, attempt=2) == 2 * heavy[0]
    assert shard_mem_mb(400, 36_000_000, 1, attempt=3) == 4 * heavy[1]
    assert shard_mem_mb(400, 36_000_000, 4) > heavy[1]  # each process holds its own image


def test_the_time_request_allows_for_image_timeout_and_a_command_s_seconds(tmp_path):
    from imagestats.workflow import command_seconds_seen

    plain = shard_runtime_min(3400, 7_500_000, 1)
    assert shard_runtime_min(3400, 7_500_000, 1, image_timeout=600) == plain + 10  # one hung image
    # a command: its seconds per image instead of the cost model's
    assert shard_runtime_min(3400, 7_500_000, 2, seconds_per_image=1.0) >= 3400 * 1.0 / 2 / 60
    stats = tmp_path / "stats.csv"
    stats.write_text("path,class,exit_status,seconds,error,note\n" + "".join(
        f"a/{i}.jpg,a,0,{s},,\n" for i, s in enumerate([0.2, 0.4, 0.3, 5.0, 0.25])
    ))  # fmt: skip
    assert command_seconds_seen(str(stats)) == 0.3  # the median the last run showed
    stats.write_text("path,class,min,error,note\na/1.jpg,a,3,,\n")
    assert command_seconds_seen(str(stats)) is None  # not a command's rows
    assert command_seconds_seen(str(tmp_path / "none.csv")) is None
