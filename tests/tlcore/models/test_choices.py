"""What the pages offer first, and what a spec's choices mean: decided once in tlcore.models.choices."""

import pytest
from support import open_page

import tlcore

VGG = dict(backbone="VGG16", input_shape=(96, 96, 3), hidden_units=256)


@pytest.mark.parametrize("name", list(tlcore.BACKBONES))
@pytest.mark.slow
def test_the_default_layer_to_train_from_is_the_third_last_with_weights(name):
    choices = tlcore.trainable_from_choices(name)
    assert tlcore.default_trainable_from(name) == choices[-3]
    tlcore.check_transfer_spec(tlcore.TransferSpec(backbone=name, input_shape=(96, 96, 3), weights=None,
                                                   trainable_from=tlcore.default_trainable_from(name)))


def test_the_default_layer_to_train_from_of_vgg16_is_its_last_block():
    assert tlcore.default_trainable_from("VGG16") == "block5_conv1"
    with pytest.raises(KeyError, match="Backbone must be one of .* Received: 'VGG17'"):
        tlcore.default_trainable_from("VGG17")


@pytest.mark.parametrize("name,layer", [("VGG16", "fc2"), ("ResNet50", "avg_pool"), ("MobileNetV2", None)])
@pytest.mark.slow
def test_the_default_feature_layer_is_the_one_a_feature_extractor_cuts_after(name, layer):
    default = tlcore.default_feature_layer(name)
    assert default == (layer or tlcore.layer_names(name, include_top=True)[-2])
    assert default in tlcore.layer_names(name, include_top=True)
    if layer is None:  # worked out from the network: the extractor's own default agrees
        assert tlcore.feature_extractor(name, weights=None).layers[-1].name == default == "global_average_pooling2d"


@pytest.mark.parametrize("spec,reads,weights,training", [
    (tlcore.TransferSpec(**VGG), True, "ImageNet weights", "the base frozen"),
    (tlcore.TransferSpec(**VGG, weights=None, trainable_from="all"), False, "random (untrained) weights",
     "every layer training"),
    (tlcore.TransferSpec(**VGG, weights="/data/uploads/ab12.weights.h5", trainable_from="block5_conv1"), False,
     "weights from a file", "training from block5_conv1"),
    (tlcore.TransferSpec(**VGG, base_model="/data/runs/r1/model.keras"), False,
     "the trained base of an earlier run", "the base frozen"),
    (tlcore.TransferSpec(**VGG, weights=None, base_model="/data/runs/r1/model.keras"), False,
     "the trained base of an earlier run", "the base frozen"),
])
def test_a_specs_weights_and_training_in_words(spec, reads, weights, training):
    assert tlcore.reads_imagenet_weights(spec) is reads
    assert tlcore.weights_words(spec) == weights and tlcore.training_words(spec) == training
    assert tlcore.spec_summary(spec) == f"{spec.describe()}; {training}; {weights}"


def test_the_summary_in_full():
    assert tlcore.spec_summary(tlcore.TransferSpec(**VGG, weights=None)) == (
        "VGG16 at 96x96, global average pooling head with 256 hidden units; the base frozen; "
        "random (untrained) weights")


@pytest.mark.slow
def test_the_train_page_states_the_spec_and_offers_builds_default_to_fine_tune_from():
    spec = tlcore.TransferSpec(**VGG, num_classes=4)  # ImageNet weights, frozen: no warning
    at = open_page("../pages/train.py", transfer_spec=spec)
    assert f"Model from the Build page: {tlcore.spec_summary(spec)}." in [c.value for c in at.caption]
    assert not any("Frozen random layers" in w.value for w in at.warning)
    assert at.selectbox(key="fine_from").value == "block5_conv1" == tlcore.default_trainable_from("VGG16")

    random = tlcore.TransferSpec(**VGG, weights=None, trainable_from="block5_conv1")
    at = open_page("../pages/train.py", transfer_spec=random)
    assert random.freezes_random_layers and "Frozen random layers have nothing to pass on" in at.warning[0].value
    assert "random (untrained) weights" in " ".join(c.value for c in at.caption)


@pytest.mark.slow
def test_the_build_page_offers_the_same_default_layer_to_train_from():
    at = open_page("../pages/build.py")
    at.radio(key="training").set_value("Train from a layer").run()
    assert not at.exception and at.selectbox(key="trainable_from").value == tlcore.default_trainable_from("VGG16")
