"""One check of a run before anything is built, stored or queued (``tlcore.check_run``)."""

import dataclasses

import pytest

import tlcore

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=4)


@pytest.fixture(scope="module")
def shapes():
    return tlcore.sample_dataset(per_class=3, size=32, seed=1)


def test_a_checked_run_has_one_output_per_class(shapes):
    checked = tlcore.check_run(SPEC, shapes, tlcore.TrainConfig(epochs=1))
    assert checked.num_classes == len(shapes.class_names) != SPEC.num_classes
    assert dataclasses.replace(checked, num_classes=SPEC.num_classes) == SPEC


def test_a_misspelt_fine_tuning_layer_is_refused_before_the_first_phase_trains(shapes):
    config = tlcore.TrainConfig(epochs=1, fine_tune_from="block_16_projct", fine_tune_epochs=1)
    with pytest.raises(tlcore.ConfigError, match=r"fine_tune_from must be None, 'all' or a layer of "
                                                 r"MobileNetV2's base .* Received: fine_tune_from='block_16_projct'"):
        tlcore.check_run(SPEC, shapes, config)
    with pytest.raises(tlcore.ConfigError, match="Received: fine_tune_from='block_16_projct'"):
        tlcore.train(SPEC, shapes, config)  # a notebook: the same check, before anything is built
    tlcore.check_run(SPEC, shapes, dataclasses.replace(config, fine_tune_from="block_16_project"))
    tlcore.check_run(SPEC, shapes, dataclasses.replace(config, fine_tune_from="block_15_add"))  # no weights: a block's end
    tlcore.check_run(dataclasses.replace(SPEC, trainable_from="block_15_add"), shapes, tlcore.TrainConfig(epochs=1))
    tlcore.check_run(SPEC, shapes, dataclasses.replace(config, fine_tune_from="all"))


@pytest.mark.parametrize("change, words", [
    (dict(epochs=2.0), "epochs must be a whole number. Received: epochs=2.0"),
    (dict(augment="yes"), "augment must be true or false. Received: augment='yes'"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number. Received: learning_rate=nan"),
    (dict(early_stopping=-1), "Early stopping's patience must be None or 0 (both off), or a number of epochs. "
                              "Received: early_stopping=-1"),
    (dict(validation_fraction=0.95), "The validation share must be from 0 to 0.9. Received: validation_fraction=0.95"),
    (dict(seed=2**32), "Seed must be from 0 to 2**32 - 1. Received: seed=4294967296"),
    (dict(resize_mode="zoom"), "Resize mode must be one of ('crop', 'squash'). Received: resize_mode='zoom'"),
])
def test_config_values_of_the_wrong_kind_or_range_are_refused_in_words(change, words):
    with pytest.raises(tlcore.ConfigError) as refused:
        tlcore.TrainConfig(**change).check()
    assert str(refused.value) == words


def test_early_stopping_0_is_off_as_the_train_page_says():
    tlcore.TrainConfig(early_stopping=0).check()


def test_too_few_images_are_refused(shapes):
    one = tlcore.ImageDataset(shapes.root, shapes.files[:1], shapes.labels[:1], shapes.class_names)
    with pytest.raises(tlcore.DatasetError, match="Training needs at least 2 images. Received: 1"):
        tlcore.check_run(SPEC, one, tlcore.TrainConfig())
