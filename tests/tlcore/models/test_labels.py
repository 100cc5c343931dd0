import tlcore


def test_thousand_labels_in_the_standard_order():
    labels = tlcore.imagenet_labels()
    ids = tlcore.imagenet_wordnet_ids()
    assert len(labels) == len(ids) == 1000
    assert labels[0] == "tench" and ids[0] == "n01440764"
    assert labels[1] == "goldfish" and labels[999] == "toilet tissue"
    assert labels[281] == "tabby" and labels[207] == "golden retriever"
    assert len(set(ids)) == 1000


def test_keras_s_names_are_kept_and_made_readable_only_for_display():
    from tlcore.models.labels import imagenet_class_names

    names = imagenet_class_names()
    assert names[2] == "great_white_shark" and names[999] == "toilet_tissue"
    assert not any(" " in name for name in names)
    assert tlcore.imagenet_labels()[2] == "great white shark"
    assert sum("_" in name for name in names) == 414
