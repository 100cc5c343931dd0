"""tlcore.explain.feature_maps: a layer's strongest channels for one image, tiled; and the Layers page's grid."""

import io

import keras
import numpy as np
import pytest
from PIL import Image
from support import image_bytes, open_page

import tlcore
from tlcore.explain.feature_maps import colour_map
from tlcore.models.scopes import shapes_only

PASS_THROUGH = "EfficientNetB0"  # its preprocess_input leaves pixels as they are (0..255)
SIZE = 16


def picture() -> Image.Image:
    """Red in the top half, green in the right half (yellow where both), nothing else."""
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    pixels[: SIZE // 2, :, 0] = 255
    pixels[:, SIZE // 2:, 1] = 255
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def planted() -> keras.Model:
    """A model whose first convolution has known 3x3 filters (no bias, linear), then layers of other kinds."""
    keras.utils.set_random_seed(3)
    kernel = np.zeros((3, 3, 3, 5), np.float32)
    kernel[1, 1, 0, 0] = 1.0  # 0: the red channel
    kernel[1, 1, 1, 1] = 0.5  # 1: half the green channel
    # 2: all zeros
    kernel[1, 1, 0, 3] = -1.0  # 3: minus the red channel
    kernel[1, 0, 1, 4], kernel[1, 2, 1, 4] = -1.0, 1.0  # 4: green's left-to-right change (a vertical edge)
    inputs = keras.Input((SIZE, SIZE, 3))
    planted_conv = keras.layers.Conv2D(5, 3, padding="same", use_bias=False, name="planted")
    x = planted_conv(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Conv2D(7, 3, padding="same", activation="relu", name="second")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(2, name="dense")(x)
    model = keras.Model(inputs, outputs)
    planted_conv.set_weights([kernel])
    return model


def test_conv_layers_are_found_by_kind_in_order(planted):
    assert tlcore.conv_layer_names(planted) == ["planted", "depthwise", "second"]
    with shapes_only():
        vgg16 = tlcore.load_backbone("VGG16", weights=None, include_top=True)
        mobilenet = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(32, 32, 3))
    assert tlcore.conv_layer_names(vgg16) == [f"block{b}_conv{c}" for b, n in
                                              ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for c in range(1, n + 1)]
    names = tlcore.conv_layer_names(mobilenet)
    assert names[:3] == ["Conv1", "expanded_conv_depthwise", "expanded_conv_project"]
    assert names[-1] == "Conv_1" and len(names) == 52  # 1 + 3 per block (2 in the first) x 17 + Conv_1


def test_planted_filters_are_chosen_by_mean_activation_and_respond_where_expected(planted):
    maps = tlcore.feature_maps(planted, picture(), "planted", backbone=PASS_THROUGH, top=5)
    assert maps.channels == (0, 1, 4, 2, 3)  # strongest mean first; minus red is the weakest
    edge_mean = (2 * 255 - 255) * SIZE / SIZE**2  # +255 at the two columns at the border, -255 at the padded edge
    np.testing.assert_allclose(maps.means, [127.5, 63.75, edge_mean, 0.0, -127.5], rtol=1e-6)
    assert maps.maps.shape == (5, SIZE, SIZE) and maps.maps.dtype == np.float32
    assert maps.channel_count == 5 and maps.input_size == (SIZE, SIZE) and maps.layer == "planted"
    red, green, edge, zero, minus_red = maps.maps
    assert (red[: SIZE // 2] == 1).all() and (red[SIZE // 2:] == 0).all()  # the red top half
    assert (green[:, SIZE // 2:] == 1).all() and (green[:, : SIZE // 2] == 0).all()
    assert (edge[:, [7, 8]] == 1).all()  # the vertical edge between the halves is the brightest
    assert (edge[:, 15] == 0).all() and np.allclose(edge[:, 1:7], 0.5)  # the image's right border; flat elsewhere
    assert (zero == 0).all() and (minus_red[SIZE // 2:] == 1).all()
    assert tlcore.feature_maps(planted, picture(), "planted", backbone=PASS_THROUGH, top=2).channels == (0, 1)


def test_the_strongest_channels_of_any_layer_match_a_direct_computation(planted):
    data = image_bytes((40, 24), seed=4)  # not square: centre-cropped, then resized to 16x16
    maps = tlcore.feature_maps(planted, data, "second", backbone=PASS_THROUGH, top=64)
    assert len(maps.channels) == 7  # top is clamped to the layer's channels
    probe = keras.Model(planted.input, planted.get_layer("second").output)
    pixels = np.asarray(tlcore.fit_image(tlcore.load_image(data), (SIZE, SIZE)), np.float32)[None]
    direct = keras.ops.convert_to_numpy(probe(pixels))[0]
    means = direct.mean(axis=(0, 1))
    assert list(maps.channels) == sorted(range(7), key=lambda c: (-means[c], c))
    np.testing.assert_allclose(maps.means, means[list(maps.channels)], rtol=1e-5, atol=1e-6)
    strongest = direct[..., maps.channels[0]]
    span = strongest.max() - strongest.min()
    if span > 0:
        np.testing.assert_allclose(maps.maps[0], (strongest - strongest.min()) / span, atol=1e-5)


@pytest.mark.parametrize("top", [0, 65, -3, 2.5, True])
def test_top_outside_1_to_64_is_refused(planted, top):
    with pytest.raises(tlcore.ConfigError, match=rf"between 1 and 64\. Received: top={top!r}"):
        tlcore.feature_maps(planted, picture(), "planted", backbone=PASS_THROUGH, top=top)


def test_a_layer_that_is_not_convolutional_is_refused(planted):
    with pytest.raises(tlcore.ConfigError, match=r"one of the model's 3 convolutional layers "
                                                 r"\(planted \.\.\. second\)\. Received: layer='gap'"):
        tlcore.feature_maps(planted, picture(), "gap", backbone=PASS_THROUGH)
    with pytest.raises(tlcore.ImageError):
        tlcore.feature_maps(planted, b"not an image", "planted", backbone=PASS_THROUGH)


def test_a_layer_inside_a_nested_base_is_reached(planted):
    outer = keras.Sequential([keras.Input((SIZE, SIZE, 3)), planted])
    assert tlcore.conv_layer_names(outer) == ["planted", "depthwise", "second"]
    maps = tlcore.feature_maps(outer, picture(), "planted", backbone=PASS_THROUGH, top=1)
    assert maps.channels == (0,) and maps.means == pytest.approx((127.5,))


def test_grid_tiles_coloured_maps_strongest_first(planted):
    maps = tlcore.feature_maps(planted, picture(), "planted", backbone=PASS_THROUGH, top=5)
    grid = tlcore.feature_grid(maps, columns=3, cell=32, gap=2)
    assert grid.mode == "RGB" and grid.size == (3 * 32 + 2 * 2, 2 * 32 + 2)  # 16 px maps doubled
    pixels = np.asarray(grid)
    low, high = tuple(colour_map(np.array(0.0))), tuple(colour_map(np.array(1.0)))
    assert high == (253, 231, 37) and low == (68, 1, 84)
    assert tuple(pixels[0, 0]) == high and tuple(pixels[15, 31]) == high  # red's top half: yellow
    assert tuple(pixels[16, 0]) == low and tuple(pixels[31, 31]) == low  # its bottom half: dark purple
    assert tuple(pixels[0, 32]) == tuple(pixels[32, 0]) == (255, 255, 255)  # the gaps
    assert tuple(pixels[0, 34]) == low and tuple(pixels[0, 34 + 31]) == high  # green's right half, second cell
    assert (pixels[34:, 68:] == 255).all()  # the sixth place is empty
    assert tuple(colour_map(np.array(0.5))) == (33, 144, 141)
    assert tlcore.feature_grid(maps).size == (3 * 96 + 2 * 3, 2 * 96 + 3)  # near-square by default
    with pytest.raises(tlcore.ConfigError, match="Columns must be between 1 and 64. Received: columns=0"):
        tlcore.feature_grid(maps.maps, columns=0)


def test_depth_note_says_early_layers_transfer_and_late_ones_are_imagenet_specific():
    layers = [f"conv{i}" for i in range(1, 10)]
    assert "early layer" in tlcore.depth_note(layers, "conv1") and "almost any task" in tlcore.depth_note(layers, "conv1")
    assert "middle layer" in tlcore.depth_note(layers, "conv5")
    assert "specific to ImageNet" in tlcore.depth_note(layers, "conv9")
    assert tlcore.depth_note(layers, "conv9").startswith("conv9 is convolutional layer 9 of 9")


def grid_captions(at) -> list[str]:
    """Captions of the feature grids on the page (st.image elements)."""
    return [caption for image in at.get("image") for caption in image.captions if "strongest" in caption]


@pytest.mark.slow
def test_layers_page_shows_the_strongest_channels_of_a_chosen_layer():
    at = open_page("../pages/layers.py", backbone="MobileNetV2")  # random (untrained) weights
    assert not at.error
    assert at.selectbox(key="sees_layer").value == "Conv1"  # an early layer by default
    [caption] = grid_captions(at)
    assert caption.startswith("The 16 strongest of 32 channels of Conv1 for the cat sample at 224x224")
    assert "early layer" in at.info[0].value
    assert "Random filters still respond to edges and colours" in at.warning[0].value
    at.selectbox(key="sees_layer").set_value("Conv_1").run()
    at.select_slider(key="sees_top").set_value(4).run()
    [caption] = grid_captions(at)
    assert caption.startswith("The 4 strongest of 1280 channels of Conv_1") and "late layer" in at.info[0].value
    at.file_uploader(key="sees_upload").set_value(("notes.png", b"plain text", "image/png")).run()
    assert not at.exception
    assert "That file cannot be used." in at.error[0].value
    assert grid_captions(at) == []
    buffer = io.BytesIO()
    picture().resize((48, 48)).save(buffer, "PNG")
    at.file_uploader(key="sees_upload").set_value(("halves.png", buffer.getvalue(), "image/png")).run()
    assert not at.error
    [caption] = grid_captions(at)
    assert "of Conv_1 for halves" in caption  # the name as plain text (Markdown escaped)
