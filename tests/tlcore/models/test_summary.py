import pytest

import tlcore


@pytest.fixture(scope="module")
def vgg16():
    return tlcore.load_backbone("VGG16", weights=None)


@pytest.fixture(scope="module")
def vgg16_notop():
    return tlcore.load_backbone("VGG16", weights=None, include_top=False)


@pytest.mark.slow
def test_vgg16_table(vgg16):
    table = tlcore.layer_table(vgg16)
    assert list(table.columns) == ["name", "type", "output_shape", "params", "trainable"]
    assert len(table) == 23
    assert table["params"].sum() == 138_357_544 == vgg16.count_params()
    fc2 = table.set_index("name").loc["fc2"]
    assert (fc2["type"], fc2["output_shape"], fc2["params"]) == ("Dense", "(None, 4096)", 4096 * 4096 + 4096)
    assert tlcore.parameter_counts(vgg16) == tlcore.ParameterCounts(138_357_544, 138_357_544, 0)


def test_vgg16_without_top(vgg16_notop):
    table = tlcore.layer_table(vgg16_notop)
    assert len(table) == 19
    assert table["params"].sum() == 14_714_688
    assert table["output_shape"].iloc[-1] == "(None, 7, 7, 512)"


@pytest.mark.slow
def test_compare_marks_the_removed_head(vgg16, vgg16_notop):
    diff = tlcore.compare_layers(vgg16, vgg16_notop)
    assert list(diff.query("status == 'removed'")["name"]) == ["flatten", "fc1", "fc2", "predictions"]
    assert (diff["status"] == "kept").sum() == 19
    assert not (diff["status"] == "added").any()


def test_frozen_counts_and_nested_expansion():
    model = tlcore.build_transfer_model(
        tlcore.TransferSpec(input_shape=(32, 32, 3), weights=None, trainable_from="block5_conv1",
                            hidden_units=8, num_classes=3)
    )
    flat = tlcore.layer_table(model, expand_nested=True)
    assert flat["params"].sum() == model.count_params()
    rows = flat.set_index("name")
    assert not rows.loc["block4_conv3", "trainable"] and rows.loc["block5_conv1", "trainable"]
    counts = tlcore.parameter_counts(model)
    block5 = 3 * (3 * 3 * 512 * 512 + 512)
    head = (512 * 8 + 8) + (8 * 3 + 3)
    assert counts.trainable == block5 + head
    assert counts.non_trainable == 14_714_688 - block5
    assert list(tlcore.layer_table(model)['name']) == [
        'image', 'vgg16', 'head_pool', 'head_dropout_1', 'head_hidden', 'head_dropout', 'head_output']
