"""The guide's per-image script still works as a drop-in for its task arrays."""

import subprocess
import sys

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
    assert (tmp_path / "out" / "Forest_2.txt").read_text() == line + "\n"


def test_a_bad_file_fails_the_array_element_visibly(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    result = run("-file", str(bad), "-out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stdout.startswith(f"filename:{bad} error:not an image Pillow can read")


def test_usage_is_the_guides():
    result = run()
    assert result.returncode == 2
    assert "-file" in result.stderr and "-out" in result.stderr
