"""The image math: exactly Pillow's numbers, and a clear error for bad files.

Every number is compared with the reference, ImageStat.Stat(image.convert("L")),
on a file of every mode some format holds and on an in-memory image of every
mode Pillow has; no expected number is written down here.
"""

import os
import struct
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageMode, ImageStat

from conftest import reference
from imagestats import measure as measure_module
from imagestats.measure import configure, histogram_stats, measure, measure_image

# brightness's columns, in the CSV's order; an error row has only the workflow's.
COLUMNS = ("path", "class", "width", "height", "mode", "min", "max", "mean", "median", "error", "note")
ERROR_ROW = {"path", "class", "error", "note"}

# IM is the one format that opens as I;16L; Pillow 13 warns that it goes in Pillow 15.
pytestmark = pytest.mark.filterwarnings("ignore:IM image format:DeprecationWarning")


@pytest.fixture(autouse=True)
def pillow_limits():
    """measure() needs configure(); restore Pillow's global limit afterwards."""
    saved = Image.MAX_IMAGE_PIXELS
    configure(89478485)
    yield
    Image.MAX_IMAGE_PIXELS = saved


def noise(shape, dtype=np.uint8, high=256, seed=0, low=0):
    return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


# Byte order of each 16-bit mode's raw data, for Image.frombytes.
U16 = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}


def sixteen_bit(mode, array):
    """An image of a 16-bit mode holding exactly ``array``'s values."""
    height, width = array.shape
    return Image.frombytes(mode, (width, height), array.astype(U16[mode]).tobytes())


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def save_la_tiff(image, path):
    """An LA image as a TIFF that Pillow opens as La (premultiplied alpha).

    Pillow writes LA with ExtraSamples = 2 (unassociated alpha) and cannot
    write La; ExtraSamples = 1 (associated alpha) is what opens as La.
    """
    image.save(path, compression=None)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"II*\0", "expected a little-endian TIFF"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, ifd)
    for k in range(entries):
        at = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, at)[0] == 338:  # ExtraSamples, one SHORT
            struct.pack_into("<H", data, at + 8, 1)
            path.write_bytes(bytes(data))
            return path
    raise AssertionError("Pillow wrote no ExtraSamples tag for LA")


def save_im(image, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        image.save(path, format="IM")
    return path


# Values of the wide-mode files: some in 0..255, some beyond, so that a byte
# order or clipping mistake changes the numbers.
WIDE = {
    "I;16 png": noise((12, 12), np.uint16, 65536, 4),
    "I;16 tiff": noise((12, 14), np.uint16, 600, 10),
    "I;16 within 0-255": noise((12, 12), np.uint16, 256, 5),
    "I;16B tiff": noise((11, 13), np.uint16, 500, 11),
    "I;16L im": noise((10, 9), np.uint16, 700, 12),
    "I 32-bit tiff": noise((8, 8), np.int32, 400, 6, low=-100),
    "F float tiff": noise((8, 8), np.float32, 300, 7) + np.float32(0.25),
}


def make_images(folder):
    """One file per mode some format keeps, with varied content.

    Returns {kind: (file, the mode Pillow must open it as)}.
    """
    f = folder
    rgb = Image.fromarray(noise((37, 53, 3)))
    la = Image.fromarray(noise((9, 11, 2), seed=3), "LA")
    return {
        "RGB jpeg": (save(rgb, f / "rgb.jpg", quality=85), "RGB"),
        "RGB png": (save(rgb, f / "rgb.png"), "RGB"),
        "RGBA": (save(Image.fromarray(noise((20, 30, 4), seed=1)), f / "rgba.png"), "RGBA"),
        "L": (save(Image.fromarray(noise((16, 16), seed=2)), f / "l.png"), "L"),
        "LA": (save(la, f / "la.png"), "LA"),
        "La tiff": (save_la_tiff(la, f / "la_premultiplied.tif"), "La"),
        "P": (save(rgb.quantize(16), f / "p.png"), "P"),
        "P with transparency": (save(rgb.quantize(8), f / "pt.gif", transparency=0), "P"),
        "P with tRNS png": (save(rgb.quantize(8), f / "ptrns.png", transparency=3), "P"),
        "PA tiff": (save(rgb.quantize(8).convert("PA"), f / "pa.tif"), "PA"),
        "1": (save(rgb.convert("1"), f / "bilevel.png"), "1"),
        "CMYK jpeg": (save(rgb.convert("CMYK"), f / "cmyk.jpg"), "CMYK"),
        "CMYK tiff": (save(rgb.convert("CMYK"), f / "cmyk.tif"), "CMYK"),
        "YCbCr tiff": (save(rgb.convert("YCbCr"), f / "ycbcr.tif"), "YCbCr"),
        # JPEG stores YCbCr, Pillow opens it as RGB
        "YCbCr jpeg": (save(rgb.convert("YCbCr"), f / "ycbcr.jpg"), "RGB"),
        "LAB tiff": (save(rgb.convert("LAB"), f / "lab.tif"), "LAB"),
        "I;16 png": (save(sixteen_bit("I;16", WIDE["I;16 png"]), f / "i16.png"), "I;16"),
        "I;16 tiff": (save(sixteen_bit("I;16", WIDE["I;16 tiff"]), f / "i16.tif"), "I;16"),
        "I;16 within 0-255": (
            save(sixteen_bit("I;16", WIDE["I;16 within 0-255"]), f / "i16low.png"), "I;16"
        ),  # fmt: skip
        "I;16B tiff": (save(sixteen_bit("I;16B", WIDE["I;16B tiff"]), f / "i16b.tif"), "I;16B"),
        "I;16L im": (save_im(sixteen_bit("I;16L", WIDE["I;16L im"]), f / "i16l.im"), "I;16L"),
        "I 32-bit tiff": (save(Image.fromarray(WIDE["I 32-bit tiff"]), f / "i32.tif"), "I"),
        "F float tiff": (save(Image.fromarray(WIDE["F float tiff"]), f / "float.tif"), "F"),
        "multi-frame gif": (
            save(
                rgb.quantize(32), f / "anim.gif", save_all=True,
                append_images=[Image.fromarray(noise((37, 53, 3), seed=9)).quantize(32)],
            ),
            "P",
        ),  # fmt: skip
        "multi-frame tiff": (
            save(rgb, f / "pages.tif", save_all=True, append_images=[rgb.convert("L")] * 2),
            "RGB",
        ),  # fmt: skip
        "webp": (save(rgb, f / "rgb.webp"), "RGB"),
        "bmp": (save(rgb, f / "rgb.bmp"), "RGB"),
    }


KINDS = [
    "RGB jpeg", "RGB png", "RGBA", "L", "LA", "La tiff", "P", "P with transparency",
    "P with tRNS png", "PA tiff", "1", "CMYK jpeg", "CMYK tiff", "YCbCr tiff",
    "YCbCr jpeg", "LAB tiff", "I;16 png", "I;16 tiff", "I;16 within 0-255",
    "I;16B tiff", "I;16L im", "I 32-bit tiff", "F float tiff", "multi-frame gif",
    "multi-frame tiff", "webp", "bmp",
]  # fmt: skip

# Modes of Pillow 13 that no file opens as: tested in memory only.
NO_FILE_FORMAT = {
    "I;16N": "no plugin opens a file as I;16N (native order is a rawmode only)",
    "RGBX": "TIFF, JPEG, WebP and Sun open 4-band RGBX data as RGB",
    "RGBa": "TIFF opens premultiplied RGBA as RGBA; nothing saves RGBa",
    "HSV": "no format stores HSV and Pillow saves it in none",
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    made = make_images(tmp_path_factory.mktemp("modes"))
    for kind, (file, mode) in made.items():
        with Image.open(file) as im:
            if im.mode != mode:
                pytest.fail(f"{kind}: {file.name} opens as {im.mode}, not {mode}")
    return {kind: file for kind, (file, _) in made.items()}


def test_every_pillow_mode_has_a_file_or_a_reason(images):
    modes = set()
    for file in images.values():
        with Image.open(file) as im:
            modes.add(im.mode)
    assert sorted(modes | set(NO_FILE_FORMAT)) == sorted(Image.MODES)
    assert not modes & set(NO_FILE_FORMAT)
    assert sorted(KINDS) == sorted(images)


def reference_or_error(file):
    """The reference's numbers, or None where it raises (no greyscale for the mode)."""
    try:
        return reference(file)
    except ValueError:
        return None


@pytest.mark.parametrize("kind", KINDS)
def test_numbers_equal_pillow_reference(images, kind):
    file = str(images[kind])
    row = measure("x/" + os.path.basename(file), file)
    expected = reference_or_error(file)
    with Image.open(file) as im:
        size, mode = im.size, im.mode
    if expected is None:
        assert f"cannot convert mode {mode} to greyscale" in row["error"]
        assert set(row) == ERROR_ROW  # an error row holds none of the analysis's columns
        return
    assert set(row) == set(COLUMNS)
    assert (row["width"], row["height"], row["mode"]) == (*size, mode)
    assert row["error"] == ""
    numbers = (row["min"], row["max"], row["mean"], row["median"])
    assert numbers == expected
    assert [type(n) for n in numbers] == [type(n) for n in expected]


def test_modes_without_greyscale_are_a_clear_error(images):
    """Pillow 13 has no convert("L") for LAB and La: the reference raises too."""
    for kind, mode in (("LAB tiff", "LAB"), ("La tiff", "La")):
        with pytest.raises(ValueError):
            reference(images[kind])
        row = measure("a", str(images[kind]))
        assert row["error"].startswith(f"Pillow cannot convert mode {mode} to greyscale")
        assert set(row) == ERROR_ROW and row["note"] == ""


def test_generated_eurosat_images_equal_reference(small_tree):
    files = sorted(small_tree.rglob("*.jpg"))
    assert len(files) == 40
    for file in files:
        row = measure(str(file.relative_to(small_tree)), str(file))
        assert (row["min"], row["max"], row["mean"], row["median"]) == reference(file)
        assert row["class"] == file.parent.name


# ------------------------------------------------------- in-memory images


def in_memory(mode, size=(23, 17), seed=0):
    """An image of ``mode`` with varied content, wide modes partly beyond 0..255."""
    rng = np.random.default_rng(seed)
    width, height = size
    if mode in U16:
        image = sixteen_bit(mode, rng.integers(0, 700, (height, width)))
    elif mode == "I":
        image = Image.fromarray(rng.integers(-300, 600, (height, width)).astype(np.int32))
    elif mode == "F":
        image = Image.fromarray(rng.uniform(-50, 400, (height, width)).astype(np.float32))
    else:
        raw_size = len(Image.new(mode, size).tobytes())
        image = Image.frombytes(mode, size, rng.bytes(raw_size))
        if mode in ("P", "PA"):
            image.putpalette(rng.bytes(768))
    assert image.mode == mode
    return image


def image_reference(image):
    stats = ImageStat.Stat(image.convert("L"))
    ((low, high),) = stats.extrema
    return low, high, stats.mean[0], stats.median[0]


@pytest.mark.parametrize("mode", Image.MODES)
@pytest.mark.parametrize("size", [(23, 17), (1, 1), (0, 0)])
def test_measure_image_equals_reference_in_every_mode(mode, size):
    image = in_memory(mode, size, seed=len(mode))
    try:
        expected = image_reference(image)
    except ValueError:
        with pytest.raises(measure_module.MeasureError, match="cannot convert mode"):
            measure_image(image)
        return
    result = measure_image(image)
    assert set(result) == {"width", "height", "mode", "min", "max", "mean", "median", "note"}
    assert (result["width"], result["height"], result["mode"]) == (*size, mode)
    numbers = (result["min"], result["max"], result["mean"], result["median"])
    assert numbers == expected
    assert [type(n) for n in numbers] == [type(n) for n in expected]


def test_wide_modes_are_the_modes_beyond_8_bits():
    """The clipping check covers every mode whose values can exceed 0..255."""
    wide = {m for m in Image.MODES if ImageMode.getmode(m).typestr not in ("|u1", "|b1")}
    assert wide == measure_module._WIDE_MODES


# ------------------------------------------- histogram arithmetic vs ImageStat


def stat_of_histogram(histogram):
    """The reference on a bare histogram: ImageStat.Stat(list)."""
    stats = ImageStat.Stat(list(histogram))
    ((low, high),) = stats.extrema
    return low, high, stats.mean[0], stats.median[0]


def one_bin(index, count):
    histogram = [0] * 256
    histogram[index] = count
    return histogram


def edge_histograms():
    """Empty, all mass in one bin, at the ends, on the median's boundary, huge."""
    yield [0] * 256
    for index in range(256):
        for count in (1, 2, 3, 2**64 + 1):
            yield one_bin(index, count)
    for low, high in ((0, 255), (0, 1), (254, 255), (127, 128), (3, 200)):
        for a, b in ((1, 1), (1, 2), (2, 1), (5, 5), (10**30, 10**30 + 1)):
            histogram = one_bin(low, a)
            histogram[high] += b
            yield histogram
    yield [1] * 256
    yield [2**63 - 1] * 256
    yield [10**40] * 256
    yield list(range(256))
    yield list(range(255, -1, -1))
    yield [(j % 2) * 7 for j in range(256)]  # odd bins only
    yield [((j + 1) % 2) * 7 for j in range(256)]  # even bins only


def random_histograms(n, seed=0):
    """Sparse and dense, small and beyond 64-bit counts (Python ints)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        high = int(rng.choice([2, 3, 10, 1000, 2**31, 2**62]))
        counts = rng.integers(0, high, 256)
        counts[rng.random(256) < rng.choice([0.0, 0.5, 0.9, 0.99, 0.999])] = 0
        histogram = [int(c) for c in counts]
        if i % 7 == 0:
            histogram = [c * 10 ** int(rng.integers(1, 30)) for c in histogram]
        yield histogram


def check_histogram(histogram):
    expected = stat_of_histogram(histogram)
    got = histogram_stats(histogram)
    assert got == expected, histogram
    assert [type(n) for n in got] == [type(n) for n in expected], histogram


def test_histogram_stats_equal_imagestat_on_edge_cases():
    cases = list(edge_histograms())
    assert len(cases) > 1000
    for histogram in cases:
        check_histogram(histogram)


def test_histogram_stats_equal_imagestat_on_random_histograms():
    for histogram in random_histograms(5000):
        check_histogram(histogram)


def test_empty_histogram_is_imagestats_answer():
    """No pixels: ImageStat says extrema (255, 0), mean int 0, median 255."""
    check_histogram([0] * 256)


# ------------------------------------------------------------------ notes


def clipped(values):
    return f"values {values.min()}..{values.max()} clipped to 0..255 by convert('L')"


def test_notes_say_what_the_reference_hides(images):
    assert measure("a", str(images["multi-frame gif"]))["note"] == "first of 2 frames measured"
    assert measure("a", str(images["multi-frame tiff"]))["note"] == "first of 3 frames measured"
    assert measure("a", str(images["I;16 within 0-255"]))["note"] == ""
    assert measure("a", str(images["RGB jpeg"]))["note"] == ""


@pytest.mark.parametrize(
    "kind", ["I;16 png", "I;16 tiff", "I;16B tiff", "I;16L im", "I 32-bit tiff", "F float tiff"]
)
def test_clipped_note_in_every_wide_mode(images, kind):
    assert measure("a", str(images[kind]))["note"] == clipped(WIDE[kind])


def test_clipped_note_in_memory_16_bit_modes():
    values = noise((5, 7), np.uint16, 900, 13)
    for mode in U16:
        assert measure_image(sixteen_bit(mode, values))["note"] == clipped(values)


def test_notes_of_a_multi_page_16_bit_tiff(tmp_path):
    """The clipping note is about the measured first page, and comes first."""
    first, second = noise((6, 8), np.uint16, 400, 15), noise((6, 8), np.uint16, 9000, 16)
    file = save(
        sixteen_bit("I;16", first), tmp_path / "pages16.tif", save_all=True,
        append_images=[sixteen_bit("I;16", second)],
    )  # fmt: skip
    row = measure("a", str(file))
    assert (row["min"], row["max"], row["mean"], row["median"]) == reference(file)
    assert row["note"] == f"{clipped(first)}; first of 2 frames measured"


def test_clipped_note_for_negative_values_only():
    values = noise((6, 6), np.int32, 200, 14, low=-50)
    assert measure_image(Image.fromarray(values))["note"] == clipped(values)
    assert measure_image(Image.fromarray(values.astype(np.float32)))["note"] == clipped(
        values.astype(np.float32)
    )


def test_no_note_for_an_empty_wide_image():
    for mode in sorted(measure_module._WIDE_MODES):
        assert measure_image(Image.new(mode, (0, 0)))["note"] == ""


def test_mode_is_the_original_mode(images):
    assert measure("a", str(images["CMYK jpeg"]))["mode"] == "CMYK"
    assert measure("a", str(images["I;16 png"]))["mode"] == "I;16"
    assert measure("a", str(images["I;16B tiff"]))["mode"] == "I;16B"
    assert measure("a", str(images["P"]))["mode"] == "P"


def test_damaged_data_is_not_called_a_conversion_error(images, monkeypatch):
    """Only convert()'s own refusal is reported as a mode it cannot convert."""

    def broken(self):
        raise ValueError("broken data")

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    row = bad_row(images["RGB png"])
    assert row["error"].startswith("ValueError: broken data (") and "convert" not in row["error"]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_unreadable_later_frame_keeps_the_numbers(tmp_path):
    """A TIFF cut inside its second page: the first page is whole, counting fails."""
    pages = [Image.fromarray(noise((30, 40, 3), seed=s)) for s in range(3)]
    save(pages[0], tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    data = (tmp_path / "pages.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    file = tmp_path / "cut.tif"
    with Image.open(file) as im, pytest.raises(Exception):
        im.n_frames  # the premise: Pillow cannot count this file's frames
    row = measure("a", str(file))
    assert row["error"] == ""
    assert (row["min"], row["max"], row["mean"], row["median"]) == reference(file)
    assert row["note"].startswith("frame count unknown, first frame measured (")


def test_failing_clip_check_keeps_the_numbers(images, monkeypatch):
    def refuse(self):
        raise ValueError("image has wrong mode")

    monkeypatch.setattr(Image.Image, "getextrema", refuse)
    file = str(images["I;16B tiff"])
    row = measure("a", file)
    assert row["error"] == ""
    assert (row["min"], row["max"], row["mean"], row["median"]) == reference(file)
    assert row["note"] == "clipping not checked (ValueError: image has wrong mode)"


# ------------------------------------------------------------ bad files


def bad_row(file):
    row = measure("bad/" + os.path.basename(str(file)), str(file))
    assert row["error"], "a bad file must have an error"
    assert set(row) == ERROR_ROW, "an error row holds none of the analysis's columns"
    return row


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty file" in bad_row(tmp_path / "empty.jpg")["error"]


def test_truncated_jpeg_is_called_truncated(tmp_path, images):
    data = images["RGB jpeg"].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    row = bad_row(tmp_path / "cut.jpg")
    assert "truncated" in row["error"] and "copy the image again" in row["error"]


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
    if os.access(file, os.R_OK):  # root reads anything: make the open refuse instead
        real_open = os.open

        def refuse(path, *a, **k):
            if str(path) == str(file):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *a, **k)

        monkeypatch.setattr(os, "open", refuse)
    assert "permission denied" in bad_row(file)["error"]
