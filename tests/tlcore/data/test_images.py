import io

import numpy as np
import pytest
from PIL import Image
from support import image_bytes

import tlcore
from tlcore.data.images import fit_image


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_each_allowed_format_decodes_to_rgb(fmt):
    image = tlcore.load_image(image_bytes((40, 30), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_path_and_file_object_sources(tmp_path):
    data = image_bytes((20, 10))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    assert tlcore.load_image(path).size == (20, 10)
    assert tlcore.load_image(str(path)).size == (20, 10)
    with open(path, "rb") as handle:
        assert tlcore.load_image(handle).size == (20, 10)


def test_rgba_is_composited_on_white():
    pixels = np.zeros((16, 16, 4), np.uint8)  # fully transparent black
    out = tlcore.load_image(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    assert np.asarray(out).min() == 255


def test_la_and_palette_with_transparency():
    la = Image.new("LA", (16, 16), (0, 0))
    assert np.asarray(tlcore.load_image(encode(la, "PNG"))).min() == 255
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 0] * 256)
    out = tlcore.load_image(encode(palette, "PNG", transparency=0))
    assert np.asarray(out).min() == 255


def test_cmyk_grayscale_and_one_bit():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    assert tuple(np.asarray(tlcore.load_image(encode(cmyk, "JPEG")))[8, 8]) == pytest.approx((255, 0, 0), abs=3)
    gray = Image.new("L", (16, 16), 100)
    assert tuple(np.asarray(tlcore.load_image(encode(gray, "PNG")))[0, 0]) == (100, 100, 100)
    one = Image.new("1", (16, 16), 1)
    assert np.asarray(tlcore.load_image(encode(one, "PNG"))).min() == 255


def test_sixteen_bit_ramp_keeps_its_levels():
    ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (16, 1))
    out = tlcore.load_image(encode(Image.fromarray(ramp), "PNG"))
    levels = np.unique(np.asarray(out)[..., 0])
    assert len(levels) > 200 and levels.min() == 0 and levels.max() == 255


def test_float_image_is_scaled_not_clipped():
    values = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1))
    out = tlcore.load_image(encode(Image.fromarray(values, "F"), "TIFF"))
    row = np.asarray(out)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and len(np.unique(row)) > 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_comes_out_upright(orientation):
    # A wide image with a red left half; stored so that applying `orientation` makes it upright.
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :20] = (255, 0, 0)
    inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_270}[orientation]
    stored = Image.fromarray(upright)
    stored = stored.transpose(inverse) if inverse is not None else stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = np.asarray(tlcore.load_image(encode(stored, "PNG", exif=exif)))
    assert out.shape == (20, 40, 3)
    assert out[10, 5, 0] == 255 and out[10, 5, 1] == 0 and out[10, 35, 0] == 0


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(tlcore.load_image(data))[0, 0]) == (255, 0, 0)


def test_empty_file():
    with pytest.raises(tlcore.ImageError, match=r"must not be empty. Received: the uploaded bytes \(0 bytes\)"):
        tlcore.load_image(b"")


def test_text_named_jpg_is_refused_by_content(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("hello, I am not a picture")
    with pytest.raises(tlcore.ImageError, match="must be JPEG, PNG, WebP, BMP, GIF or TIFF. Received: 'photo.jpg'"):
        tlcore.load_image(path)


@pytest.mark.parametrize("fmt", ["PDF", "ICO", "TGA"])
def test_formats_outside_the_allow_list(fmt):
    data = encode(Image.new("RGB", (32, 32)), fmt)
    with pytest.raises(tlcore.ImageError, match="must be JPEG, PNG"):
        tlcore.load_image(data)


def test_truncated_jpeg():
    data = image_bytes((64, 64), "JPEG")
    with pytest.raises(tlcore.ImageError, match="must be complete and readable"):
        tlcore.load_image(data[: len(data) // 2])


@pytest.mark.slow
def test_huge_declared_size_is_refused_before_decoding():
    image = Image.new("1", (30000, 30000))
    data = encode(image, "PNG", optimize=True)
    assert len(data) < 1_000_000
    with pytest.raises(tlcore.ImageError, match=r"at most 40,000,000 pixels. Received: .* 900,000,000 pixels"):
        tlcore.load_image(data)


def test_pixel_limit_is_a_setting(monkeypatch):
    monkeypatch.setenv("TL_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(tlcore.ImageError, match="at most 100 pixels"):
        tlcore.load_image(image_bytes((20, 20)))


def test_too_small():
    with pytest.raises(tlcore.ImageError, match=r"at least 8x8 pixels. Received: .* of 4x20"):
        tlcore.load_image(image_bytes((4, 20)))


def test_crop_keeps_aspect_and_squash_stretches():
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, :10] = 255  # white left quarter
    image = Image.fromarray(wide)
    cropped = np.asarray(fit_image(image, (10, 10), mode="crop"))
    squashed = np.asarray(fit_image(image, (10, 10), mode="squash"))
    assert cropped.max() == 0  # the centre has no white
    assert squashed[:, 0].min() == 255 and squashed[:, -1].max() == 0
    with pytest.raises(ValueError, match="Resize mode must be one of"):
        fit_image(image, (10, 10), mode="zoom")


def many_scans_jpeg(size: int = 64, copies: int = 1_000) -> bytes:
    """A progressive JPEG whose last scan is repeated: every copy is one more full decoding pass."""
    data = encode(Image.new("RGB", (size, size), (120, 60, 200)), "JPEG", progressive=True)
    last_scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")  # FF DA never occurs in scan data
    return data[:end] + data[last_scan:end] * copies + data[end:]


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding(monkeypatch):
    data = many_scans_jpeg(size=2048, copies=3_000)  # 73 KB; Pillow decodes it in about 8.6 s
    assert len(data) < 300_000
    decoded = []  # every pixel decoder Pillow creates (ImageFile.load asks Image._getdecoder for one)
    real_decoder = Image._getdecoder
    monkeypatch.setattr(Image, "_getdecoder", lambda mode, name, *args: decoded.append(name) or real_decoder(
        mode, name, *args))
    with pytest.raises(tlcore.ImageError, match=r"at most 100 scans \(TL_MAX_JPEG_SCANS\).*"
                                                r"Received: the uploaded bytes with more than 100 scans"):
        tlcore.load_image(data)
    assert decoded == []  # refused from its markers alone: not one scan was decoded
    monkeypatch.setenv("TL_MAX_JPEG_SCANS", "2000")
    assert tlcore.load_image(many_scans_jpeg(size=16)).size == (16, 16)  # a real, decodable JPEG
    assert decoded == ["jpeg"]  # ...whose decoding the spy does see


def test_ordinary_progressive_and_baseline_jpegs_still_load():
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    for progressive in (True, False):
        assert tlcore.load_image(encode(picture, "JPEG", progressive=progressive)).size == (64, 48)
    with_restarts = encode(picture, "JPEG", progressive=True, restart_marker_blocks=1)
    assert tlcore.load_image(with_restarts).size == (64, 48)


def test_jpeg_scans_are_counted_by_walking_the_markers():
    from tlcore.data.images import jpeg_structure

    progressive = encode(Image.new("RGB", (32, 32), (9, 99, 199)), "JPEG", progressive=True)
    assert jpeg_structure(progressive, max_scans=100, max_segments=1_400)[0] == 10
    assert jpeg_structure(many_scans_jpeg(copies=50), max_scans=100, max_segments=1_400)[0] == 60
    assert jpeg_structure(many_scans_jpeg(copies=5_000), max_scans=100, max_segments=1_400)[0] == 101  # stops early


def test_a_jpeg_padded_with_thousands_of_segments_is_refused():
    data = encode(Image.new("RGB", (32, 32)), "JPEG")
    padded = data[:2] + b"\xff\xfe\x00\x02" * 5_000 + data[2:]  # 5,000 empty comments
    with pytest.raises(tlcore.ImageError, match=r"at most 1,400 marker segments.*TL_MAX_JPEG_SCANS"):
        tlcore.load_image(padded)


@pytest.mark.parametrize("mode, values", [
    ("I;16", np.arange(0, 65536, 7, dtype=np.uint16)),
    ("I;16", np.arange(0, 256, dtype=np.uint16)),  # already 8-bit levels: kept as they are
    ("I", np.arange(-5000, 90000, 11, dtype=np.int32)),  # outside 0..65535: the range is stretched
    ("F", np.linspace(-3.0, 6.0, 1001, dtype=np.float32)),
])
def test_wide_images_convert_as_rounded_scaling_would(mode, values):
    """The levels of the float64 formula it replaced (16-bit: round(v / 257), exactly; stretched to 0..255 in
    float32, a level apart where a value lies on a rounding edge)."""
    from tlcore.data.images import _to_8bit

    image = Image.fromarray(values.reshape(1, -1), mode=mode) if mode != "I;16" else Image.fromarray(values.reshape(1, -1))
    v = values.astype(np.float64)
    if mode == "I;16":
        expected = v / 257 if v.max() > 255 else v
    else:
        expected = (v - min(v.min(), 0)) / (max(v.max(), 0) - min(v.min(), 0)) * 255
    got = np.asarray(_to_8bit(image)).astype(int).reshape(-1)
    apart = np.abs(got - np.clip(np.rint(expected), 0, 255).astype(int))
    assert apart.max() == 0 if mode == "I;16" else (apart.max() <= 1 and apart.mean() < 0.01)
    assert got.min() == round(expected.min()) and got.max() == min(255, round(expected.max()))


def test_a_small_file_of_forty_million_16_bit_pixels_converts_without_a_gigabyte():
    from support import peak_growth

    buffer = io.BytesIO()
    Image.new("I;16", (6300, 6300), 40000).save(buffer, "PNG")  # 92 KB on disk
    data = buffer.getvalue()
    with peak_growth(limit_mb=450):  # in float64 with temporaries: 1.3 GB
        picture = tlcore.load_image(data)
    assert picture.size == (6300, 6300) and picture.getpixel((0, 0)) == (156, 156, 156)
