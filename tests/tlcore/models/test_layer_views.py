"""The Layers page's tables come from networks built with shapes only: the real tables, no weights allocated."""

import pandas as pd
from support import peak_growth

import tlcore


def test_the_tables_are_those_of_the_real_networks():
    views = tlcore.layer_views("MobileNetV2", 128, "avg")
    full = tlcore.load_backbone("MobileNetV2", weights=None)
    cut = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(128, 128, 3), pooling="avg")
    pd.testing.assert_frame_equal(views.full, tlcore.layer_table(full))
    pd.testing.assert_frame_equal(views.cut, tlcore.layer_table(cut))
    assert views.full_counts == tlcore.parameter_counts(full) and views.cut_counts == tlcore.parameter_counts(cut)
    pd.testing.assert_frame_equal(views.comparison, tlcore.compare_layers(full, cut))


def test_vgg16_with_its_top_is_described_without_its_138_million_weights():
    with peak_growth(limit_mb=150):  # built for real: about 1.9 GB at its peak
        views = tlcore.layer_views("VGG16", 300, None)
    assert views.full_counts.total == 138_357_544 and views.cut["output_shape"].iloc[-1] == "(None, 9, 9, 512)"
