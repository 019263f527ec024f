"""Your tested single-file command, unchanged, run once per image inside the shard jobs."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, read_stats, snakemake
from imagestats import command
from imagestats.names import unescape

GUIDE_SCRIPT = REPO / "tests" / "guide" / "image_processor.py"
GUIDE_COMMAND = f"{sys.executable} image_processor.py -file {{}} -out {{outdir}}"

# Prints its arguments and, last, a JSON object of them: the row's columns.
ECHO = """\
import json, sys
print("some progress")
print(json.dumps({"whole": sys.argv[1], "name": sys.argv[2], "stem": sys.argv[3],
                  "name_stem": sys.argv[4], "folder": sys.argv[5], "count": len(sys.argv) - 1}))
"""
COUNT = """\
import sys
with open("calls.txt", "a") as f:
    f.write(sys.argv[1] + "\\n")
"""


def run(workdir, tree, *args, config=(), check=True, per_job=100):
    return snakemake(
        workdir, "--cores", "2", *args,
        config=(f"input_dir={tree}", f"images_per_job={per_job}", *config), check=check,
    )  # fmt: skip


def guide_line(text):
    """The numbers of a line the guide's script writes."""
    return re.fullmatch(r"filename:(.*) min:(\d+) max:(\d+) mean:([\d.]+)\n", text).groups()[1:]


# ----------------------------------------------------------- the template


def test_replacement_strings_are_gnu_parallel_s():
    path = "EuroSAT_RGB/Forest/Forest_1.jpg"
    got = command.argv("prog {} {/} {.} {/.} {//} {outdir}", path)
    assert got == ["prog", path, "Forest_1.jpg", "EuroSAT_RGB/Forest/Forest_1", "Forest_1", "EuroSAT_RGB/Forest",
                   "results/command_output"]  # fmt: skip
    assert command.argv("prog -v", path) == ["prog", "-v", path]  # no replacement string: {} added
    assert command.argv("prog {} | wc", path) is None  # shell syntax: run by bash
    assert command.expand("prog {} > {/.}.out", "a b/it's $(x).jpg") == (
        "prog 'a b/it'\"'\"'s $(x).jpg' > 'it'\"'\"'s $(x)'.out"
    )


def test_a_template_that_cannot_work_is_refused():
    with pytest.raises(command.CommandError, match="not a valid shell command"):
        command.check("prog 'unclosed {}")
    with pytest.raises(command.CommandError, match="empty"):
        command.check("  ")


# ------------------------------------------------------ the guide's script


def test_the_guide_s_script_runs_unchanged_over_a_tree_with_a_broken_file(tree, tmp_path):
    (tree / "River" / "broken.jpg").write_bytes(b"\xff\xd8 not an image")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(GUIDE_SCRIPT, work / "image_processor.py")
    os.symlink(tree, work / "EuroSAT_RGB")  # the images under the working directory, as in the guide
    run(work, "EuroSAT_RGB", config=(f"command={GUIDE_COMMAND}",))
    rows = {row["path"]: row for row in read_stats(work)}
    assert len(rows) == 31
    bad = rows.pop("River/broken.jpg")
    assert bad["exit_status"] == "1" and "UnidentifiedImageError" in bad["error"]
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    outdir = work / "results" / "command_output"
    assert sorted(p.name for p in outdir.iterdir()) == sorted(os.path.basename(p) + ".txt" for p in rows)
    for path, row in rows.items():
        assert row["error"] == "" and row["exit_status"] == "0" and float(row["seconds"]) > 0
        shown = f"EuroSAT_RGB/{path}"
        # the script run by hand, in the same folder, on the same path
        done = subprocess.run([sys.executable, "image_processor.py", "-file", shown, "-out", str(by_hand)],
                              cwd=work, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0 and done.stdout.startswith(f"Opening source image: {shown}")
        name = os.path.basename(path) + ".txt"
        assert (outdir / name).read_text() == (by_hand / name).read_text()
        assert guide_line((outdir / name).read_text())
    summary = (work / "results" / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("class,column,images,ok,errors") and any(",exit_status," in s for s in summary)
    assert (work / "results" / "plots" / "columns_by_class.png").exists()


def test_the_guide_s_script_without_arguments_fails_as_the_guide_says(tmp_path):
    done = subprocess.run([sys.executable, str(GUIDE_SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 1 and "Usage" in done.stdout


# -------------------------------------------- failing, hanging, odd names


def test_failing_and_hanging_commands_are_error_rows_and_the_run_completes(small_tree, tmp_path):
    work = tmp_path / "work"
    script = (
        "import sys, time\n"
        "name = sys.argv[1]\n"
        "if name.endswith('_1.jpg'): print('line one', file=sys.stderr); print('it broke', file=sys.stderr); sys.exit(3)\n"
        "if name.endswith('_2.jpg'): time.sleep(600)\n"
    )
    work.mkdir()
    (work / "check.py").write_text(script)
    run(work, small_tree, config=(f"command={sys.executable} check.py {{}}", "image_timeout=2"))
    rows = read_stats(work)
    assert len(rows) == 40
    for row in rows:
        if row["path"].endswith("_1.jpg"):
            assert row["exit_status"] == "3"
            assert row["error"] == "the command failed (exit status 3): line one | it broke"
        elif row["path"].endswith("_2.jpg"):
            assert row["error"].startswith("took longer than image_timeout (2 s)"), row
            assert 2 <= float(row["seconds"]) < 10
        else:
            assert row["error"] == "" and row["exit_status"] == "0"


@pytest.mark.parametrize("shell", [False, True])
def test_odd_file_names_reach_the_command_as_one_word(tmp_path, shell):
    tree = tmp_path / "images" / "odd folder"
    tree.mkdir(parents=True)
    names = ["plain.jpg", "with space.jpg", "it's.jpg", 'say "hi".jpg', "$(touch pwned).jpg", "semi;colon.jpg",
             "star*.jpg", "back\\slash.jpg", "ünï.jpg"]  # fmt: skip
    source = REPO / "config" / "sample" / "EuroSAT_RGB" / "Forest" / "Forest_1.jpg"
    for name in names:
        shutil.copy(source, tree / name)
    work = tmp_path / "work"
    work.mkdir()
    (work / "echo.py").write_text(ECHO)
    template = f"{sys.executable} echo.py {{}} {{/}} {{.}} {{/.}} {{//}}" + (" 2>&1" if shell else "")
    assert (command.argv(template, "x") is None) == shell
    run(work, tmp_path / "images", config=(f"command={template}",))
    rows = read_stats(work)
    assert len(rows) == len(names)
    for row in rows:
        file = str(tmp_path / "images" / os.fsdecode(unescape(row["path"])))  # the CSV escapes a backslash
        assert row["error"] == "" and row["count"] == "5", row
        assert row["whole"] == file and row["name"] == os.path.basename(file)
        assert row["stem"] == os.path.splitext(file)[0] and row["name_stem"] == os.path.splitext(os.path.basename(file))[0]
        assert row["folder"] == str(tree)
    assert not list(tmp_path.rglob("pwned")) and not (work / "pwned").exists()


# ------------------------------------------------------------ kept work


def test_a_rerun_runs_the_command_only_for_the_added_image_and_all_after_an_edit(tree, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "count.py").write_text(COUNT)
    template = f"{sys.executable} count.py {{}}"
    run(work, tree, "results/stats.csv", config=(f"command={template}",), per_job=7)
    assert len((work / "calls.txt").read_text().splitlines()) == 30
    shutil.copy(tree / "Forest" / "Forest_1.jpg", tree / "Forest" / "Forest_new.jpg")
    run(work, tree, "results/stats.csv", config=(f"command={template}",), per_job=7)
    calls = (work / "calls.txt").read_text().splitlines()
    assert len(calls) == 31 and calls[-1].endswith("Forest/Forest_new.jpg")
    # another command text: every image is due
    run(work, tree, "results/stats.csv", config=(f"command={template} --again",), per_job=7)
    assert len((work / "calls.txt").read_text().splitlines()) == 31 + 31


def test_command_and_analysis_together_are_refused_before_any_job(small_tree, tmp_path):
    result = run(tmp_path / "work", small_tree, check=False, config=("command=true {}", "analysis=bands"))
    assert result.returncode != 0 and "sets both analysis (bands) and command" in result.output
    assert not (tmp_path / "work" / "results" / "shards").exists()


def test_json_on_the_last_line_becomes_columns():
    values = command._json_values('progress\n{"score": 0.5, "ok": true, "label": "x"}\n')
    assert values == {"score": 0.5, "ok": True, "label": "x"}
    assert command._json_values("no json here\n") == {}
    assert command._json_values('{"a": 1}\nthen more\n') == {}
    assert json.loads('{"a": 1}') == command._json_values('{"a": 1}')
