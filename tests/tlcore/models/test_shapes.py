import pytest

import tlcore


def test_vgg16_at_16_explains_the_five_poolings():
    with pytest.raises(
        tlcore.ShapeError,
        match=r"Input size must be at least 32x32 for VGG16 with include_top=False: its five 2x2 "
        r"max-poolings .* Received: input_shape=\(16, 16, 3\)",
    ):
        tlcore.check_input_shape("VGG16", (16, 16, 3))


def test_vgg16_at_48_is_accepted_with_a_note_on_the_1x1_map():
    check = tlcore.check_input_shape("VGG16", (48, 48, 3))
    assert check.feature_map == (1, 1, 512)
    assert "1x1x512 feature map" in check.notes[0]


@pytest.mark.parametrize("size,expected", [(32, (1, 1, 512)), (128, (4, 4, 512)), (300, (9, 9, 512))])
def test_feature_map_sizes(size, expected):
    assert tlcore.check_input_shape("VGG16", (size, size, 3)).feature_map == expected
    assert bool(tlcore.check_input_shape("VGG16", (size, size, 3)).notes) == (expected[0] == 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(tlcore.BACKBONES))
def test_every_backbone_refuses_one_under_its_minimum(name):
    spec = tlcore.BACKBONES[name]
    small = spec.min_size - 1
    with pytest.raises(tlcore.ShapeError, match=f"at least {spec.min_size}x{spec.min_size} for {name}"):
        tlcore.check_input_shape(name, (small, small, 3))
    assert min(tlcore.check_input_shape(name, (spec.min_size, spec.min_size, 3)).feature_map[:2]) >= 1


def test_include_top_needs_the_default_size():
    with pytest.raises(tlcore.ShapeError, match=r"must be 299x299 for InceptionV3 with include_top=True"):
        tlcore.check_input_shape("InceptionV3", (224, 224, 3), include_top=True)
    assert tlcore.check_input_shape("InceptionV3", (299, 299, 3), include_top=True).input_shape == (299, 299, 3)


@pytest.mark.parametrize("shape", [(64, 64, 1), (64, 64, 4)])
def test_channels_must_be_three(shape):
    with pytest.raises(tlcore.ShapeError, match=rf"must have 3 channels \(RGB\).*Received: input_shape=\(64, 64, {shape[2]}\)"):
        tlcore.check_input_shape("VGG16", shape)


@pytest.mark.parametrize("shape", [(64, 64), "64x64", (64.0, 64, 3), None])
def test_malformed_shapes(shape):
    with pytest.raises(tlcore.ShapeError, match=r"must be \(height, width, channels\)"):
        tlcore.check_input_shape("VGG16", shape)


def test_too_large():
    with pytest.raises(tlcore.ShapeError, match="at most 1024x1024"):
        tlcore.check_input_shape("VGG16", (2048, 2048, 3))


def test_smallest_input():
    assert tlcore.smallest_input("VGG16") == 32
    assert tlcore.smallest_input("VGG16", 4) == 128
    assert tlcore.smallest_input("InceptionV3") == 75


@pytest.mark.parametrize("backbone, min_map, smallest, builds", [
    ("VGG16", 4, 128, [128, 127]),  # the last halving rounds down: the first guess
    ("MobileNetV2", 2, 33, [64, 63, 33, 32]),  # it rounds up: the second
])
def test_the_smallest_input_for_a_larger_map_is_a_guess_proved_by_two_builds(monkeypatch, backbone, min_map,
                                                                              smallest, builds):
    """A search built InceptionV3 six times (9 s here) for the note at 75x75; the stride guesses the size, and a
    guess stands only when it works and one pixel less does not."""
    from tlcore.models import shapes

    sides = []
    build = shapes.build_architecture

    def counted(spec, **options):
        sides.append(options["input_shape"][0])
        return build(spec, **options)

    monkeypatch.setattr(shapes, "build_architecture", counted)
    shapes._built_feature_map.cache_clear()
    assert shapes._smallest_input.__wrapped__(tlcore.get_backbone(backbone), min_map) == smallest
    assert sides == builds


@pytest.mark.slow
def test_padded_backbones_are_measured_at_the_real_size():
    # MobileNetV2 and EfficientNet pad by the input's size: 48 leaves 2x2 (not 1x1), 300 leaves 10x10.
    check = tlcore.check_input_shape("MobileNetV2", (48, 48, 3))
    assert check.feature_map == (2, 2, 1280) and not check.notes
    assert tlcore.feature_map_shape("EfficientNetB0", (300, 300)) == (10, 10, 1280)
    assert tlcore.smallest_input("MobileNetV2", 2) == 33
    assert "(e.g. 33x33 or more)" in tlcore.check_input_shape("MobileNetV2", (32, 32, 3)).notes[0]


def test_full_network_with_weights_none_takes_any_size_from_the_minimum():
    check = tlcore.check_input_shape("VGG16", (64, 64, 3), include_top=True, weights=None)
    assert check.feature_map == (2, 2, 512)
    with pytest.raises(tlcore.ShapeError, match=r"at least 32x32 for VGG16 with include_top=True: its five") as info:
        tlcore.check_input_shape("VGG16", (16, 16, 3), include_top=True, weights=None)
    assert "ImageNet" not in str(info.value)
    model = tlcore.load_backbone("VGG16", weights=None, include_top=True, input_shape=(32, 32, 3))
    assert model.output.shape[1:] == (1000,)


@pytest.mark.slow
def test_mobilenet_v2_has_imagenet_classifiers_at_five_sizes():
    for size in (96, 128, 160, 192, 224):
        tlcore.check_input_shape("MobileNetV2", (size, size, 3), include_top=True)
    with pytest.raises(
        tlcore.ShapeError,
        match=r"must be one of 96x96, 128x128, 160x160, 192x192, 224x224 for MobileNetV2 with "
        r"include_top=True and ImageNet weights.*Received: input_shape=\(100, 100, 3\)",
    ):
        tlcore.check_input_shape("MobileNetV2", (100, 100, 3), include_top=True)
