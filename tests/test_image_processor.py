"""The guide's per-image script still works as a drop-in for its task arrays."""

import subprocess
import sys

from PIL import Image

from conftest import SCRIPTS, reference


def run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "image_processor.py"), *args], capture_output=True, text=True
    )


def test_writes_the_guides_line_with_exact_numbers(small_tree, tmp_path):
    image = small_tree / "Forest" / "Forest_2.jpg"
    result = run("-file", str(image), "-out", str(tmp_path / "out"))
    low, high, mean, _ = reference(image)
    line = f"filename:{image} min:{low} max:{high} mean:{mean}"
    assert result.returncode == 0
    assert result.stdout == line + "\n"
    assert (tmp_path / "out" / "Forest_2.jpg.txt").read_text() == line + "\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["Forest_2.jpg.txt"]


def test_same_name_other_extension_gives_its_own_file(small_tree, tmp_path):
    """hopper.jpg and hopper.png must not overwrite each other's result."""
    with Image.open(small_tree / "Forest" / "Forest_2.jpg") as im:
        im.save(tmp_path / "hopper.jpg")
        im.convert("L").point(lambda v: 255 - v).save(tmp_path / "hopper.png")
    out = tmp_path / "out"
    lines = {}
    for name in ("hopper.jpg", "hopper.png"):
        image = tmp_path / name
        assert run("-file", str(image), "-out", str(out)).returncode == 0
        low, high, mean, _ = reference(image)
        lines[name + ".txt"] = f"filename:{image} min:{low} max:{high} mean:{mean}\n"
    assert reference(tmp_path / "hopper.jpg") != reference(tmp_path / "hopper.png")
    assert {p.name: p.read_text() for p in out.iterdir()} == lines


def test_a_bad_file_fails_the_array_element_visibly(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    result = run("-file", str(bad), "-out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stdout.startswith(f"filename:{bad} error:not an image Pillow can read")
    assert (tmp_path / "out" / "broken.jpg.txt").read_text() == result.stdout


def test_usage_is_the_guides():
    result = run()
    assert result.returncode == 2
    assert "-file" in result.stderr and "-out" in result.stderr
