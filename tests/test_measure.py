"""The image math: exactly Pillow's numbers, and a clear error for bad files."""

import os

import numpy as np
import pytest
from PIL import Image

from conftest import reference
from imagestats.measure import COLUMNS, configure, measure


@pytest.fixture(autouse=True)
def pillow_limits():
    """measure() needs configure(); restore Pillow's global limit afterwards."""
    saved = Image.MAX_IMAGE_PIXELS
    configure(89478485)
    yield
    Image.MAX_IMAGE_PIXELS = saved


def noise(shape, dtype=np.uint8, high=256, seed=0):
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def make_images(folder):
    """One file per mode the workflow must handle, with varied content."""
    f = folder
    rgb = Image.fromarray(noise((37, 53, 3)))
    return {
        "RGB jpeg": save(rgb, f / "rgb.jpg", quality=85),
        "RGB png": save(rgb, f / "rgb.png"),
        "RGBA": save(Image.fromarray(noise((20, 30, 4), seed=1)), f / "rgba.png"),
        "L": save(Image.fromarray(noise((16, 16), seed=2)), f / "l.png"),
        "LA": save(Image.fromarray(noise((9, 11, 2), seed=3)), f / "la.png"),
        "P": save(rgb.quantize(16), f / "p.png"),
        "P with transparency": save(rgb.quantize(8), f / "pt.gif", transparency=0),
        "P with tRNS png": save(rgb.quantize(8), f / "ptrns.png", transparency=3),
        "1": save(rgb.convert("1"), f / "bilevel.png"),
        "CMYK jpeg": save(rgb.convert("CMYK"), f / "cmyk.jpg"),
        "CMYK tiff": save(rgb.convert("CMYK"), f / "cmyk.tif"),
        "I;16 png": save(
            Image.fromarray(noise((12, 12), np.uint16, 65536, 4)), f / "i16.png"
        ),
        "I;16 within 0-255": save(
            Image.fromarray(noise((12, 12), np.uint16, 256, 5)), f / "i16low.png"
        ),
        "I 32-bit tiff": save(
            Image.fromarray(noise((8, 8), np.int32, 70000, 6)), f / "i32.tif"
        ),
        "F float tiff": save(
            Image.fromarray(noise((8, 8), np.float32, 300, 7).astype(np.float32)),
            f / "float.tif",
        ),
        "YCbCr jpeg": save(rgb.convert("YCbCr"), f / "ycbcr.jpg"),
        "multi-frame gif": save(
            rgb.quantize(32), f / "anim.gif", save_all=True,
            append_images=[Image.fromarray(noise((37, 53, 3), seed=9)).quantize(32)],
        ),  # fmt: skip
        "multi-frame tiff": save(
            rgb, f / "pages.tif", save_all=True, append_images=[rgb.convert("L")] * 2
        ),
        "webp": save(rgb, f / "rgb.webp"),
        "bmp": save(rgb, f / "rgb.bmp"),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("modes"))


@pytest.mark.parametrize(
    "kind",
    [
        "RGB jpeg", "RGB png", "RGBA", "L", "LA", "P", "P with transparency",
        "P with tRNS png",
        "1", "CMYK jpeg", "CMYK tiff", "I;16 png", "I;16 within 0-255",
        "I 32-bit tiff", "F float tiff", "YCbCr jpeg", "multi-frame gif",
        "multi-frame tiff", "webp", "bmp",
    ],
)  # fmt: skip
def test_numbers_equal_pillow_reference(images, kind):
    file = str(images[kind])
    row = measure("x/" + os.path.basename(file), file)
    assert row["error"] == ""
    assert (row["min"], row["max"], row["mean"], row["median"]) == reference(file)
    with Image.open(file) as im:
        assert (row["width"], row["height"], row["mode"]) == (*im.size, im.mode)
    assert set(row) == set(COLUMNS)


def test_generated_eurosat_images_equal_reference(small_tree):
    files = sorted(small_tree.rglob("*.jpg"))
    assert len(files) == 40
    for file in files:
        row = measure(str(file.relative_to(small_tree)), str(file))
        assert (row["min"], row["max"], row["mean"], row["median"]) == reference(file)
        assert row["class"] == file.parent.name


def test_notes_say_what_the_reference_hides(images):
    assert measure("a", str(images["multi-frame gif"]))["note"] == "first of 2 frames measured"
    assert measure("a", str(images["multi-frame tiff"]))["note"] == "first of 3 frames measured"
    assert "clipped to 0..255" in measure("a", str(images["I;16 png"]))["note"]
    assert measure("a", str(images["I;16 within 0-255"]))["note"] == ""
    assert measure("a", str(images["RGB jpeg"]))["note"] == ""


def test_mode_is_the_original_mode(images):
    assert measure("a", str(images["CMYK jpeg"]))["mode"] == "CMYK"
    assert measure("a", str(images["I;16 png"]))["mode"] == "I;16"
    assert measure("a", str(images["P"]))["mode"] == "P"


# ------------------------------------------------------------ bad files


def bad_row(file):
    row = measure("bad/" + os.path.basename(str(file)), str(file))
    assert row["error"], "a bad file must have an error"
    assert row["min"] is None and row["mean"] is None
    return row


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty file" in bad_row(tmp_path / "empty.jpg")["error"]


def test_truncated_jpeg_keeps_size_and_mode(tmp_path, images):
    data = images["RGB jpeg"].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    row = bad_row(tmp_path / "cut.jpg")
    assert "truncated" in row["error"]
    assert (row["width"], row["height"], row["mode"]) == (53, 37, "RGB")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels\n")
    assert "not an image" in bad_row(tmp_path / "notes.jpg")["error"]


def test_corrupt_png(tmp_path, images):
    data = bytearray(images["RGB png"].read_bytes())
    data[60:200] = bytes(140)  # zero the compressed pixel data
    (tmp_path / "broken.png").write_bytes(bytes(data))
    assert bad_row(tmp_path / "broken.png")["error"]


def test_decompression_bomb_is_an_error(tmp_path, images):
    configure(1000)  # 53 x 37 = 1961 pixels: between the limit and twice it
    assert "max_image_pixels" in bad_row(images["RGB png"])["error"]
    configure(500)  # over twice the limit: Pillow's own DecompressionBombError
    assert "max_image_pixels" in bad_row(images["RGB png"])["error"]


def test_real_bomb_header(tmp_path):
    """A tiny PNG declaring 30000 x 30000 pixels is refused before decoding."""
    Image.new("1", (30000, 30000)).save(tmp_path / "bomb.png")
    assert os.path.getsize(tmp_path / "bomb.png") < 200_000
    assert "decompression bomb" in bad_row(tmp_path / "bomb.png")["error"]


def test_missing_and_broken_link(tmp_path):
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "link.jpg")
    assert "not found" in bad_row(tmp_path / "link.jpg")["error"]
    assert "not found" in bad_row(tmp_path / "gone.jpg")["error"]


def test_folder_and_fifo_are_not_read(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")  # reading it would block forever
    assert "not a regular file" in bad_row(tmp_path / "dir.jpg")["error"]
    assert "not a regular file" in bad_row(tmp_path / "pipe.jpg")["error"]


def test_unreadable_file(tmp_path, images, monkeypatch):
    file = tmp_path / "secret.jpg"
    file.write_bytes(images["RGB jpeg"].read_bytes())
    file.chmod(0)
    if os.access(file, os.R_OK):  # root reads anything: make open() refuse instead
        real_open = Image.open

        def refuse(fp, *a, **k):
            if str(fp) == str(file):
                raise PermissionError(13, "Permission denied", str(fp))
            return real_open(fp, *a, **k)

        monkeypatch.setattr(Image, "open", refuse)
    assert "permission denied" in bad_row(file)["error"]
