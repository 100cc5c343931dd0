import tlcore


def test_thousand_labels_in_the_standard_order():
    labels = tlcore.imagenet_labels()
    ids = tlcore.imagenet_wordnet_ids()
    assert len(labels) == len(ids) == 1000
    assert labels[0] == "tench" and ids[0] == "n01440764"
    assert labels[1] == "goldfish" and labels[999] == "toilet tissue"
    assert labels[281] == "tabby" and labels[207] == "golden retriever"
    assert len(set(ids)) == 1000
