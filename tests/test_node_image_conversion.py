"""sensor_msgs/Image and CompressedImage <-> numpy (zsp_ros.node.image_conversion)."""
from __future__ import annotations

import array
import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from zsp_ros.node.compressed_image import compressed_to_numpy, numpy_to_compressed
from zsp_ros.node.image_conversion import check_picture, to_rgb8
from zsp_ros.node.image_encodings import (
    ENCODINGS,
    NOT_PICTURE,
    ImageConversionError,
    convert_encoding,
    normalise_to_grey8,
)
from zsp_ros.node.raw_image import image_to_numpy, numpy_to_image

H, W = 5, 7
PICTURES = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1"]


def _sample(encoding: str, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """Random array in the layout of ``encoding`` that uses the whole value range."""
    info = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if info.channels == 1 else (h, w, info.channels)
    if info.dtype.kind == "f":
        return rng.normal(0.0, 1e3, size=shape).astype(info.dtype)
    lim = np.iinfo(info.dtype)
    return rng.integers(lim.min, lim.max, size=shape, endpoint=True, dtype=info.dtype)


def _raw(encoding: str, data: bytes, *, h: int, w: int, step: int, big: bool = False) -> Image:
    msg = Image()
    msg.height, msg.width, msg.step = h, w, step
    msg.encoding = encoding
    msg.is_bigendian = big
    msg.data = array.array("B", data)
    return msg


def _padded_bytes(arr: np.ndarray, pad: int, byteorder: str = "<") -> bytes:
    """Rows of ``arr`` in ``byteorder``, each followed by ``pad`` bytes of 0xAB garbage."""
    rows = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(byteorder)))
    rows = rows.view(np.uint8).reshape(arr.shape[0], -1)
    garbage = np.full((arr.shape[0], pad), 0xAB, np.uint8)
    return np.concatenate([rows, garbage], axis=1).tobytes()


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    arr = _sample(encoding)
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_image(arr, encoding, header=header)
    info = ENCODINGS[encoding]
    assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
    assert msg.step == W * info.pixel_bytes
    assert len(msg.data) == H * msg.step
    assert msg.is_bigendian == 0                        # little-endian host
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("camera", 12, 345)
    out = image_to_numpy(msg)
    assert out.dtype == info.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))   # zero-copy decode


def test_one_channel_accepts_trailing_axis_and_safe_cast():
    ids = np.arange(H * W, dtype=np.uint8).reshape(H, W, 1)
    msg = numpy_to_image(ids, "32SC1")                  # uint8 -> int32 is lossless
    out = image_to_numpy(msg)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, ids[:, :, 0])


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("pad", [1, 8])               # 1: rows not aligned to the element size
def test_padded_rows(encoding, pad):
    arr = _sample(encoding, seed=1)
    step = W * ENCODINGS[encoding].pixel_bytes + pad
    msg = _raw(encoding, _padded_bytes(arr, pad), h=H, w=W, step=step)
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    copied = image_to_numpy(msg, copy=True)
    assert copied.flags.c_contiguous and not np.shares_memory(copied, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(copied, arr)
    if encoding in PICTURES and encoding not in NOT_PICTURE:
        np.testing.assert_array_equal(to_rgb8(msg), convert_encoding(arr, encoding, "rgb8"))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32SC1", "32FC1"])
@pytest.mark.parametrize("pad", [0, 3])
def test_big_endian_multibyte_data(encoding, pad):
    arr = _sample(encoding, seed=2)
    step = W * ENCODINGS[encoding].pixel_bytes + pad
    msg = _raw(encoding, _padded_bytes(arr, pad, ">"), h=H, w=W, step=step, big=True)
    out = image_to_numpy(msg)
    assert out.dtype == ENCODINGS[encoding].dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    # The same bytes read as little-endian give different values: the flag really matters.
    msg.is_bigendian = False
    assert not np.array_equal(image_to_numpy(msg), arr)


def test_big_endian_flag_irrelevant_for_8bit():
    arr = _sample("rgb8", seed=3)
    msg = _raw("rgb8", arr.tobytes(), h=H, w=W, step=W * 3, big=True)
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_bytes_data_is_accepted():
    arr = _sample("16UC1", seed=4)
    msg = _raw("16UC1", arr.tobytes(), h=H, w=W, step=W * 2)
    msg._data = arr.tobytes()                           # e.g. a message built with checks off
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize("encoding", ["yuv422", "RGB8", "", "64FC1"])
def test_unknown_encoding(encoding):
    msg = _raw(encoding, bytes(H * W * 3), h=H, w=W, step=W * 3)
    with pytest.raises(ImageConversionError, match=r"encoding .* not supported"):
        image_to_numpy(msg)
    with pytest.raises(ImageConversionError, match="encoding"):
        numpy_to_image(np.zeros((H, W, 3), np.uint8), encoding)


def test_error_is_value_error():
    assert issubclass(ImageConversionError, ValueError)


@pytest.mark.parametrize("h, w, field", [(0, W, "height=0"), (H, 0, "width=0"), (0, 0, "height=0")])
def test_zero_sized_image(h, w, field):
    msg = _raw("mono8", b"", h=h, w=w, step=w)
    with pytest.raises(ImageConversionError, match=field):
        image_to_numpy(msg)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "32FC1"])
def test_step_smaller_than_row(encoding):
    step = W * ENCODINGS[encoding].pixel_bytes - 1
    msg = _raw(encoding, bytes(H * step), h=H, w=W, step=step)
    with pytest.raises(ImageConversionError, match=rf"step={step} is smaller"):
        image_to_numpy(msg)


@pytest.mark.parametrize("delta", [-1, 1, -W * 3])
def test_data_length_mismatch(delta):
    n = H * W * 3 + delta
    msg = _raw("rgb8", bytes(n), h=H, w=W, step=W * 3)
    with pytest.raises(ImageConversionError, match=rf"data has {n} bytes but height x step"):
        image_to_numpy(msg)


def test_numpy_to_image_errors():
    with pytest.raises(ImageConversionError, match=r"shape \(5, 7\) does not fit encoding 'rgb8'"):
        numpy_to_image(np.zeros((H, W), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match=r"expected \[H, W, 4\]"):
        numpy_to_image(np.zeros((H, W, 3), np.uint8), "bgra8")
    with pytest.raises(ImageConversionError, match=r"shape \(5, 7, 3\) does not fit encoding 'mono8'"):
        numpy_to_image(np.zeros((H, W, 3), np.uint8), "mono8")
    with pytest.raises(ImageConversionError, match="int64 cannot be stored losslessly"):
        numpy_to_image(np.zeros((H, W), np.int64), "32SC1")
    with pytest.raises(ImageConversionError, match="float64 cannot be stored losslessly"):
        numpy_to_image(np.zeros((H, W), np.float64), "32FC1")
    with pytest.raises(ImageConversionError, match="empty"):
        numpy_to_image(np.zeros((0, W), np.int32), "32SC1")


# ------------------------------------------------------------------------ colour


def _rgb(seed: int = 5) -> np.ndarray:
    return _sample("rgb8", seed=seed)


def test_to_rgb8_from_every_picture_encoding():
    rgb = _rgb()
    alpha = np.full((H, W, 1), 77, np.uint8)
    grey = _sample("mono8", seed=6)
    grey16 = _sample("mono16", seed=7)
    cases = {
        "rgb8": (rgb, rgb),
        "bgr8": (rgb[..., ::-1], rgb),
        "rgba8": (np.concatenate([rgb, alpha], axis=2), rgb),
        "bgra8": (np.concatenate([rgb[..., ::-1], alpha], axis=2), rgb),
        "mono8": (grey, np.repeat(grey[..., None], 3, axis=2)),
        "8UC1": (grey, np.repeat(grey[..., None], 3, axis=2)),
    }
    del grey16
    for encoding, (arr, expected) in cases.items():
        out = to_rgb8(numpy_to_image(arr, encoding))
        assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous, encoding
        np.testing.assert_array_equal(out, expected, err_msg=encoding)


def test_to_rgb8_is_zero_copy_for_packed_rgb8():
    msg = numpy_to_image(_rgb(), "rgb8")
    assert np.shares_memory(to_rgb8(msg), np.frombuffer(msg.data, np.uint8))


def test_to_rgb8_refuses_8uc3_which_has_no_channel_order():
    with pytest.raises(ImageConversionError, match=r"encoding '8UC3' cannot be shown as RGB"):
        to_rgb8(numpy_to_image(_sample("8UC3"), "8UC3"))


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1", "32SC1"])
def test_measurements_are_refused_by_default_with_their_own_cause(encoding):
    msg = numpy_to_image(_sample(encoding), encoding)
    for call in (lambda: check_picture(msg), lambda: to_rgb8(msg)):
        with pytest.raises(ImageConversionError, match=rf"encoding '{encoding}' holds measurements") as err:
            call()
        assert err.value.cause == "not_picture" and "depth_encoding_policy:=normalise" in str(err.value)


def test_normalise_policy_scales_each_frames_valid_range_to_grey():
    depth = np.array([[0, 500, 1000], [1500, 2500, 0]], np.uint16)          # 0 = no reading (depth)
    msg = numpy_to_image(depth, "16UC1")
    check_picture(msg, depth_policy="normalise")
    out = to_rgb8(msg, depth_policy="normalise")
    assert out.shape == (2, 3, 3) and (out[..., 0] == out[..., 2]).all()
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 64], [128, 255, 0]])   # 500 -> 0 ... 2500 -> 255
    metres = np.array([[np.nan, 1.0], [np.inf, 3.0]], np.float32)
    np.testing.assert_array_equal(to_rgb8(numpy_to_image(metres, "32FC1"), depth_policy="normalise")[..., 1],
                                  [[0, 0], [0, 255]])
    flat = normalise_to_grey8(np.full((2, 2), 7, np.uint16))
    assert (flat == 128).all() and (normalise_to_grey8(np.zeros((2, 2), np.float32)) == 0).all()
    with pytest.raises(ImageConversionError, match="depth_policy must be one of refuse, normalise"):
        to_rgb8(msg, depth_policy="clip")


def test_convert_encoding_grey_and_alpha():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)   # RGB
    grey = convert_encoding(px, "rgb8", "mono8")
    np.testing.assert_array_equal(grey, [[76, 150, 29, 18]])    # round(BT.601 luma)
    np.testing.assert_array_equal(convert_encoding(px[..., ::-1], "bgr8", "mono8"), grey)
    np.testing.assert_array_equal(convert_encoding(px, "rgb8", "mono16"), grey.astype(np.uint16) * 257)
    rgba = convert_encoding(grey, "mono8", "bgra8")
    assert rgba.shape == (1, 4, 4) and (rgba[..., 3] == 255).all()
    np.testing.assert_array_equal(rgba[..., 0], grey)
    bgra = convert_encoding(px, "rgb8", "bgra8")
    np.testing.assert_array_equal(bgra[..., :3], px[..., ::-1])
    assert (bgra[..., 3] == 255).all()
    same = _sample("8UC1")
    assert convert_encoding(same, "8UC1", "mono8") is same
    with pytest.raises(ImageConversionError, match="source encoding '8UC3' has no colour meaning"):
        convert_encoding(px, "8UC3", "rgb8")
    with pytest.raises(ImageConversionError, match="does not fit encoding 'rgba8'"):
        convert_encoding(px, "rgba8", "rgb8")


# ------------------------------------------------------------------------ compressed


@pytest.mark.parametrize("encoding", PICTURES)
def test_png_round_trip_is_exact(encoding):
    arr = _sample(encoding, seed=8)
    header = Header(frame_id="cam")
    header.stamp.sec = 99
    msg = numpy_to_compressed(arr, encoding, format="png", header=header)
    assert msg.format.startswith(f"{encoding}; png compressed ")
    assert bytes(msg.data[:4]) == b"\x89PNG"
    assert (msg.header.frame_id, msg.header.stamp.sec) == ("cam", 99)
    out, out_encoding = compressed_to_numpy(msg)
    assert out_encoding == encoding and out.dtype == ENCODINGS[encoding].dtype
    np.testing.assert_array_equal(out, arr)


def _smooth_rgb() -> np.ndarray:
    """A smooth 32x48 RGB picture (JPEG keeps it within a few grey levels)."""
    y, x = np.mgrid[0:32, 0:48].astype(np.float32)
    return np.stack([x * 5, y * 7, 255 - x * 3 - y * 2], axis=2).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "8UC1"])
def test_jpeg_round_trip_is_close(encoding):
    rgb = _smooth_rgb()
    arr = convert_encoding(rgb, "rgb8", encoding)
    msg = numpy_to_compressed(arr, encoding, format="jpeg", quality=95)
    assert bytes(msg.data[:2]) == b"\xff\xd8"
    out, out_encoding = compressed_to_numpy(msg)
    assert out_encoding == encoding and out.shape == arr.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - arr.astype(int)).mean() < 2.0
    np.testing.assert_allclose(to_rgb8(msg), convert_encoding(arr, encoding, "rgb8"), atol=12)


def _jpeg_bytes(rgb: np.ndarray) -> array.array:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return array.array("B", buf.getvalue())


@pytest.mark.parametrize("fmt, encoding", [
    ("jpeg", "rgb8"),
    ("JPEG", "rgb8"),
    ("", "rgb8"),                                      # sniffed from the data
    ("rgb8; jpeg compressed bgr8", "rgb8"),            # image_transport from an rgb8 camera
    ("bgr8; jpeg compressed bgr8", "bgr8"),            # ... from a bgr8 camera
    ("bgra8; jpeg compressed bgr8", "bgra8"),          # alpha was dropped by the publisher
    ("mono8; jpeg compressed mono8", "mono8"),
])
def test_compressed_format_strings(fmt, encoding):
    rgb = _smooth_rgb()
    msg = CompressedImage(format=fmt)
    msg.data = _jpeg_bytes(rgb)
    out, out_encoding = compressed_to_numpy(msg)
    assert out_encoding == encoding
    expected = convert_encoding(rgb, "rgb8", encoding)
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 2.0
    assert np.abs(to_rgb8(msg).astype(int) - (rgb if encoding != "mono8" else
                  convert_encoding(expected, "mono8", "rgb8")).astype(int)).mean() < 2.0


def test_palette_png_decodes_as_rgb8():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, 3:] = [200, 10, 30]
    buf = io.BytesIO()
    PILImage.fromarray(rgb).quantize(colors=2).save(buf, format="PNG")   # mode P
    msg = CompressedImage(format="png")
    msg.data = array.array("B", buf.getvalue())
    out, encoding = compressed_to_numpy(msg)
    assert encoding == "rgb8"
    np.testing.assert_array_equal(out, rgb)


def test_compressed_errors():
    good = _jpeg_bytes(_smooth_rgb())
    cases = [
        (CompressedImage(format="jpeg"), r"data is empty"),
        (CompressedImage(format="tiff", data=good), r"format 'tiff' names no supported codec"),
        (CompressedImage(format="16UC1; compressedDepth png", data=good), r"compressedDepth"),
        (CompressedImage(format="yuv9; jpeg compressed bgr8", data=good), r"original encoding 'yuv9'"),
        (CompressedImage(format="png", data=good), r"data is not a valid PNG stream"),
        (CompressedImage(format="jpeg", data=array.array("B", b"\xff\xd8garbage")), r"not a valid JPEG"),
        (CompressedImage(format="", data=array.array("B", b"GIF89a....")), r"format is empty"),
    ]
    for msg, pattern in cases:
        with pytest.raises(ImageConversionError, match=pattern):
            compressed_to_numpy(msg)
    with pytest.raises(ImageConversionError, match="cannot be stored as JPEG"):
        numpy_to_compressed(_sample("rgba8"), "rgba8", format="jpeg")
    with pytest.raises(ImageConversionError, match="cannot be stored as JPEG"):
        numpy_to_compressed(_sample("16UC1"), "16UC1", format="jpeg")
    with pytest.raises(ImageConversionError, match="format 'bmp' is not supported"):
        numpy_to_compressed(_rgb(), "rgb8", format="bmp")
    with pytest.raises(ImageConversionError, match="encoding '32FC1' cannot be compressed"):
        numpy_to_compressed(_sample("32FC1"), "32FC1", format="png")
    with pytest.raises(ImageConversionError, match="empty"):
        numpy_to_compressed(np.zeros((0, 4, 3), np.uint8), "rgb8", format="png")
