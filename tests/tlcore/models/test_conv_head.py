"""Heads with new convolutional blocks: built, checked in plain words, counted, trained, stored."""

import dataclasses
import json

import keras
import numpy as np
import pytest

import tlcore


def spec(**changes):
    defaults = dict(backbone="VGG16", input_shape=(128, 128, 3), weights=None, hidden_units=16, num_classes=3)
    return tlcore.TransferSpec(**{**defaults, **changes})


def test_blocks_sit_between_the_base_and_the_pooling_with_their_names_and_sizes():
    model = tlcore.build_transfer_model(spec(conv_blocks=2, conv_filters=32, conv_kernel=3, pool_size=1))
    names = [layer.name for layer in model.layers]
    assert names[names.index("vgg16") + 1:] == [
        "head_conv_1", "head_conv_pool_1", "head_conv_2", "head_conv_pool_2", "head_avg_window", "head_pool",
        "head_dropout_1", "head_hidden", "head_dropout", "head_output"]
    conv = model.get_layer("head_conv_1")
    assert (conv.filters, conv.kernel_size, conv.padding, conv.activation.__name__) == (32, (3, 3), "same", "relu")
    assert conv.count_params() == 3 * 3 * 512 * 32 + 32 and conv.trainable
    assert model.get_layer("head_conv_pool_1").output.shape[1:] == (2, 2, 32)  # 4x4 leaving VGG16 at 128, halved
    assert model.get_layer("head_conv_pool_2").output.shape[1:] == (1, 1, 32)
    assert model(np.zeros((1, 128, 128, 3), np.float32)).shape == (1, 3)


def test_no_pooling_in_the_blocks_keeps_the_map_and_no_blocks_is_the_old_head():
    model = tlcore.build_transfer_model(spec(input_shape=(32, 32, 3), conv_blocks=3, conv_pool=1, conv_kernel=1))
    assert model.get_layer("head_conv_3").output.shape[1:] == (1, 1, 64)
    assert not any(layer.name.startswith("head_conv_pool") for layer in model.layers)
    plain = tlcore.build_transfer_model(spec())
    assert not any(layer.name.startswith("head_conv") for layer in plain.layers)


def test_the_plan_says_what_the_blocks_leave_and_counts_them():
    plan = tlcore.plan_transfer_model(spec(conv_blocks=1, conv_filters=8))
    assert plan.check.feature_map == (4, 4, 512) and plan.head_map == (2, 2, 8)
    assert tlcore.head_feature_map(spec(conv_blocks=1, conv_filters=8), (5, 7, 512)) == (2, 3, 8)  # rounded down
    assert "head_conv_1" in set(plan.layers["name"]) and "head_conv_pool_1" in set(plan.layers["name"])
    model = tlcore.build_transfer_model(spec(conv_blocks=1, conv_filters=8))
    assert plan.counts == tlcore.parameter_counts(model)
    cost = tlcore.model_cost(spec(conv_blocks=1, conv_filters=8))  # budgets count the new layers too
    assert (cost.params, cost.trainable_params) == (plan.counts.total, plan.counts.trainable)
    assert cost.params == tlcore.model_cost(spec()).params - (512 * 16 + 16) + (3 * 3 * 512 * 8 + 8) + (8 * 16 + 16)


def test_seed_48x48_head_with_two_blocks_is_refused_with_the_smallest_input():
    with pytest.raises(tlcore.ShapeError, match=(
            r"^The feature map leaving the base must be at least 4x4 for 2 convolutional blocks with a 2x2 max "
            r"pooling each, which divide it by 4: VGG16 at 48x48 leaves 1x1x512\. The smallest input that works "
            r"is 128x128\. Received: input_shape=\(48, 48, 3\), conv_blocks=2, conv_pool=2$")):
        tlcore.build_transfer_model(spec(input_shape=(48, 48, 3), conv_blocks=2))
    tlcore.check_transfer_spec(spec(input_shape=(128, 128, 3), conv_blocks=2))  # the size it names works


@pytest.mark.slow
def test_one_block_on_a_1x1_map_names_its_pooling():
    with pytest.raises(tlcore.ShapeError, match=(
            r"^The feature map leaving the base must be at least 3x3 for 1 convolutional block with a 3x3 max "
            r"pooling, which divides it by 3: MobileNetV2 at 48x48 leaves 2x2x1280\. The smallest input that works "
            r"is 65x65\. Received: input_shape=\(48, 48, 3\), conv_blocks=1, conv_pool=3$")):
        tlcore.check_transfer_spec(spec(backbone="MobileNetV2", input_shape=(48, 48, 3), conv_blocks=1, conv_pool=3))
    tlcore.check_transfer_spec(spec(backbone="MobileNetV2", input_shape=(65, 65, 3), conv_blocks=1, conv_pool=3))
    with pytest.raises(tlcore.ShapeError):
        tlcore.check_transfer_spec(spec(backbone="MobileNetV2", input_shape=(64, 64, 3), conv_blocks=1, conv_pool=3))


def test_an_average_window_after_the_blocks_must_fit_what_they_leave():
    with pytest.raises(tlcore.ShapeError, match=(
            r"^An average pooling of 4x4 must fit the map it receives: VGG16 at 128x128 leaves 4x4x512, and 2 "
            r"convolutional blocks with a 2x2 max pooling each make it 1x1x64\. The smallest input that works is "
            r"512x512\. Received: input_shape=\(128, 128, 3\), pool_size=4, conv_blocks=2, conv_pool=2$")):
        tlcore.check_transfer_spec(spec(conv_blocks=2, pool_size=4))
    tlcore.check_transfer_spec(spec(input_shape=(512, 512, 3), conv_blocks=2, pool_size=4, hidden_units=0))
    with pytest.raises(tlcore.ShapeError, match=r"^An average pooling of 4x4 must fit the feature map leaving the "
                                                r"base: VGG16 at 48x48 leaves 1x1x512\. The smallest input"):
        tlcore.check_transfer_spec(spec(input_shape=(48, 48, 3), pool_size=4))  # the article's case, as before


@pytest.mark.parametrize("change,message", [
    (dict(conv_blocks=5), r"New convolutional blocks must be from 0 to 4\. Received: conv_blocks=5"),
    (dict(conv_blocks=-1), r"New convolutional blocks must be from 0 to 4\. Received: conv_blocks=-1"),
    (dict(conv_blocks=1, conv_filters=0), r"Filters of a new convolution must be from 1 to 1024\. Received: conv_filters=0"),
    (dict(conv_blocks=1, conv_kernel=9), r"Kernel size of a new convolution must be from 1 to 7\. Received: conv_kernel=9"),
    (dict(conv_blocks=1, conv_pool=0),
     r"The max pooling closing a new block must be from 1 \(none\) to 4\. Received: conv_pool=0"),
    (dict(conv_blocks=1.5), r"Received: conv_blocks=1\.5"),
])
def test_conv_choices_outside_what_is_accepted(change, message):
    with pytest.raises(tlcore.ConfigError, match=message):
        tlcore.check_transfer_spec(spec(**change))


def test_a_budget_refusal_describes_the_blocks(monkeypatch):
    monkeypatch.setenv("TL_MAX_MODEL_PARAMS", "20000000")
    with pytest.raises(tlcore.BudgetError, match=(
            r"\(VGG16 at 128x128, 1 new convolutional block of 1,024 7x7 filters, global average pooling head "
            r"with 16 hidden units\); use fewer or smaller new convolutions")):
        tlcore.check_transfer_spec(spec(conv_blocks=1, conv_filters=1024, conv_kernel=7, conv_pool=1))


def test_a_frozen_base_is_cached_before_the_blocks_which_train():
    model = tlcore.build_transfer_model(spec(input_shape=(64, 64, 3), conv_blocks=1, conv_filters=8))
    prefix, rest = tlcore.frozen_split(model)
    assert prefix.output.shape[1:] == (2, 2, 512)  # the base's map: the new convolution has weights to learn
    assert rest.layers[1].name == "head_conv_1"
    assert [w.name for w in rest.trainable_weights] == [w.name for w in model.trainable_weights]


def test_run_records_keep_the_blocks_and_old_records_still_load(tmp_path):
    store = tlcore.RunStore(tmp_path)
    with_blocks = spec(conv_blocks=2, conv_filters=16, conv_kernel=5, conv_pool=1)
    run_id = store.create(with_blocks, tlcore.TrainConfig(), {"name": "shapes"})
    assert store.get(run_id).spec == with_blocks
    config = tmp_path / run_id / "config.json"
    saved = json.loads(config.read_text())
    for field in ("conv_blocks", "conv_filters", "conv_kernel", "conv_pool"):
        del saved["spec"][field]  # a record written before heads had blocks
    config.write_text(json.dumps(saved))
    old = store.get(run_id).spec
    assert old == dataclasses.replace(with_blocks, conv_blocks=0, conv_filters=64, conv_kernel=3, conv_pool=2)
    assert not any(layer.name.startswith("head_conv") for layer in tlcore.build_transfer_model(old).layers)


@pytest.mark.slow
def test_a_saved_model_with_blocks_passes_the_allow_list(tmp_path):
    model = tlcore.build_transfer_model(spec(backbone="MobileNetV2", input_shape=(32, 32, 3), conv_blocks=1,
                                             conv_pool=1, conv_filters=4))
    model.save(tmp_path / "blocks.keras")
    loaded = tlcore.load_model_file(tmp_path / "blocks.keras")
    assert isinstance(loaded.get_layer("head_conv_1"), keras.layers.Conv2D)


@pytest.mark.slow
def test_training_a_head_with_blocks_reads_the_frozen_base_from_the_feature_cache(tmp_path):
    dataset = tlcore.sample_dataset(per_class=4, size=32, seed=3)
    cache = tlcore.training.feature_cache.FeatureCache(tmp_path / "features")
    transfer = spec(input_shape=(32, 32, 3), conv_blocks=1, conv_filters=4, conv_pool=1, hidden_units=0)
    result = tlcore.train(transfer, dataset, tlcore.TrainConfig(epochs=1, batch_size=8), cache=cache)
    assert result.feature_cache and len(result.history) == 1
    assert result.model.get_layer("head_conv_1").kernel.shape == (3, 3, 512, 4)


def test_blocks_no_input_can_feed_say_so():
    with pytest.raises(tlcore.ShapeError, match=(
            r"at least 256x256 for 4 convolutional blocks with a 4x4 max pooling each, which divide it by 256: "
            r"VGG16 at 128x128 leaves 4x4x512\. No input up to 1024x1024 leaves a 256x256 map: use fewer blocks "
            r"or smaller poolings\. Received: input_shape=\(128, 128, 3\), conv_blocks=4, conv_pool=4$")):
        tlcore.check_transfer_spec(spec(conv_blocks=4, conv_pool=4))
