"""The transfer curve's one streaming pass against one extraction per tap, measured in one run.

Run: .venv/bin/python bench/transfer_curve.py [images] [size]

VGG16 (random weights: ImageNet files cannot be downloaded here; the cost of a forward pass
does not depend on the weights) at 128 px over 512 built-in sample images (drawn at 128 px):

- "one pass": ``extract_taps`` with every tap missing: one multi-output model, one streaming
  pass over the image files, five pooled feature files written.
- "per tap": for each of the five taps, ``FeatureCache.features`` on that tap's prefix alone
  (a pass that decodes every image and runs the network up to the tap), as a curve built from
  separate extractions would.

Each side writes into its own empty cache folder. Target: per tap / one pass at least 3x.
float32 throughout.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_DATA_DIR", "/tmp/tl-bench")
os.environ["TL_PRECISION"] = "float32"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tlcore  # noqa: E402
from tlcore.explain.transfer_curve import _tapped, curve_taps, extract_taps  # noqa: E402
from tlcore.training.feature_cache import FeatureCache  # noqa: E402


def main(images: int = 512, size: int = 128) -> None:
    dataset = tlcore.sample_dataset(per_class=images // 4, size=size, seed=0)
    base = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(size, size, 3))
    taps = curve_taps(base, include_top=False)
    root = Path(os.environ["TL_DATA_DIR"]) / "bench-curve"
    shutil.rmtree(root, ignore_errors=True)
    preprocess = tlcore.get_backbone("VGG16").preprocess
    warm = tlcore.sample_dataset(per_class=2, size=size, seed=9)  # trace both paths once, off the clock
    extract_taps(base, taps, warm, backbone="VGG16", mode="crop", cache=FeatureCache(root / "warm"))

    started = time.perf_counter()
    extract_taps(base, taps, dataset, backbone="VGG16", mode="crop", cache=FeatureCache(root / "one"))
    one = time.perf_counter() - started

    separate = FeatureCache(root / "each")
    started = time.perf_counter()
    for tap in taps:
        separate.features(_tapped(base, tap), dataset, backbone="VGG16", preprocess=preprocess)
    each = time.perf_counter() - started
    print(f"VGG16 at {size} px, {len(dataset)} images, taps {', '.join(taps)}")
    print(f"one pass, all {len(taps)} taps: {one:.1f} s")
    print(f"one extraction per tap:        {each:.1f} s")
    print(f"speed-up: {each / one:.1f}x (target >= 3x)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
