"""float32 against bfloat16 inference, in the same process, for every backbone; what ``auto`` picks; accuracy.

Run: .venv/bin/python bench/precision.py [--repeats 10] [--batch-repeats 5] [--backbones VGG16,ResNet50]
     [--no-speed] [--no-training]

For each backbone at its default size (weights=None: the arithmetic, and so the
time, is the same as with ImageNet weights):

- one image through the classifier (what Predict runs) and a batch of 16 through
  the feature extractor (what Features and the feature cache run), each the
  fastest of alternating float32 / bfloat16 calls after a warm-up (the fastest,
  not the median: on a shared machine other work only ever adds time, and a
  median of a few calls mostly measures the neighbours);
- what ``auto`` picks for one image and for batches, calibrating afresh (in a
  temporary data folder), and whether that pick is slower than float32 here;
- the lowest cosine similarity of the batch's bfloat16 features with float32's.

Then accuracy: VGG16 and MobileNetV2 trained here on the built-in sample (the
models of training runs) against float32 on held-out images, and what ``auto``
makes of each; a training run whose frozen-prefix features are computed in
float32 and in bfloat16; and the ImageNet classifiers whose weights are in the
Keras cache (skipped, and said so, where they are not).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TL_DATA_DIR"] = tempfile.mkdtemp(prefix="tl-bench-precision-")  # fresh calibrations
os.environ["TL_PRECISION"] = "auto"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import tlcore  # noqa: E402
from tlcore.data.pipeline import image_batches  # noqa: E402
from tlcore.inference import calibration as tc  # noqa: E402
from tlcore.inference.forward import compiled_forward  # noqa: E402

BATCH = 16


def alternating_fastest(calls: dict, x: np.ndarray, repeats: int) -> dict[str, float]:
    """Fastest seconds of each call on ``x``, calls alternating, after one warm-up each."""
    for call in calls.values():
        call(x)
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x)
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def sample_inputs(backbone: str, count: int) -> np.ndarray:
    """``count`` images of the built-in sample at the backbone's size, preprocessed for it."""
    spec = tlcore.get_backbone(backbone)
    shapes = tlcore.sample_dataset(per_class=max(1, count // 4), size=64, seed=3)
    size = (spec.default_size, spec.default_size)
    batches = image_batches(shapes, np.arange(count), size, preprocess=spec.preprocess, batch_size=count)
    return next(iter(batches))[0].numpy()


def speed(backbone: str, repeats: int, batch_repeats: int) -> dict:
    """``auto``'s picks (and what their first-use calibration costs), timings and feature agreement."""
    classifier = tlcore.load_backbone(backbone, weights=None)
    started = time.perf_counter()
    auto_one = tlcore.choose_precision(classifier, backbone=backbone, batch=1)  # copy, trace, time
    calibrate_one = time.perf_counter() - started
    one = sample_inputs(backbone, BATCH)[:1]
    single = alternating_fastest({p: compiled_forward(classifier, precision=p) for p in ("float32", "bfloat16")},
                                 one, repeats)
    del classifier
    extractor = tlcore.feature_extractor(backbone, weights=None)
    started = time.perf_counter()
    auto_batch = tlcore.choose_precision(extractor, backbone=backbone, batch=BATCH)
    calibrate_batch = time.perf_counter() - started
    batch = sample_inputs(backbone, BATCH)
    forwards = {p: compiled_forward(extractor, precision=p) for p in ("float32", "bfloat16")}
    batched = alternating_fastest(forwards, batch, batch_repeats)
    check = tlcore.compare_precisions(extractor, [batch])
    return {"single": single, "batched": batched, "auto_one": auto_one, "auto_batch": auto_batch,
            "cosine": check.min_cosine, "calibration": (calibrate_one, calibrate_batch)}


def speed_table(names: list[str], repeats: int, batch_repeats: int) -> list[str]:
    lines = [
        f"| backbone | size | one image f32 | one image bf16 | ratio | batch of {BATCH} f32 | batch bf16 | ratio "
        "| `auto` one image | `auto` batches | slower under `auto`? | feature cosine (min) "
        "| first-use calibration (one / batch) | load average (1 min) before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        started, load_before = time.perf_counter(), os.getloadavg()[0]  # other work slows both precisions
        r = speed(name, repeats, batch_repeats)
        s, b = r["single"], r["batched"]
        slower = []
        for kind, choice, measured in (("one", r["auto_one"], s), ("batch", r["auto_batch"], b)):
            if measured[choice.precision] > measured["float32"]:
                slower.append(f"{kind}: {measured['float32'] / measured[choice.precision]:.2f}x")

        def pick(choice: tlcore.PrecisionChoice) -> str:
            c = choice.calibration
            return f"{choice.precision} ({c.speedup:.2f}x clock, {c.cpu_speedup:.2f}x CPU)" if c else choice.describe()

        size = tlcore.get_backbone(name).default_size
        lines.append(
            f"| {name} | {size} | {s['float32'] * 1000:.0f} ms | {s['bfloat16'] * 1000:.0f} ms "
            f"| {s['float32'] / s['bfloat16']:.2f}x | {BATCH / b['float32']:.1f} img/s "
            f"| {BATCH / b['bfloat16']:.1f} img/s | {b['float32'] / b['bfloat16']:.2f}x "
            f"| {pick(r['auto_one'])} | {pick(r['auto_batch'])} | {', '.join(slower) or 'no'} | {r['cosine']:.5f} "
            f"| {r['calibration'][0]:.1f} s / {r['calibration'][1]:.1f} s | {load_before:.1f} / {os.getloadavg()[0]:.1f} |"
        )
        print(lines[-1] + f"  <!-- {time.perf_counter() - started:.0f} s -->", file=sys.stderr, flush=True)
    return lines


def trained_check() -> list[str]:
    """A VGG16 trained here (the model of a training run), float32 against bfloat16 on held-out images."""
    lines = ["| model | held-out images | top-1 agreement | max probability error | min cosine "
             "| `auto` for it (speed-up, cosine on calibration inputs) |",
             "|---|---|---|---|---|---|"]
    train = tlcore.sample_dataset(per_class=32, size=64, seed=0)
    held_out = tlcore.sample_dataset(per_class=32, size=64, seed=1)
    for backbone, size in (("VGG16", 64), ("MobileNetV2", 64)):
        spec = tlcore.TransferSpec(backbone=backbone, input_shape=(size, size, 3), weights=None,
                                   trainable_from="all", hidden_units=64, dropout=0.0)
        result = tlcore.train(spec, train, tlcore.TrainConfig(epochs=4, batch_size=16, learning_rate=1e-4,
                                                              cache_features=False))
        batches = [x.numpy() for x, _ in image_batches(held_out, np.arange(len(held_out)), (size, size),
                                                       preprocess=tlcore.get_backbone(backbone).preprocess,
                                                       batch_size=32)]
        c = tlcore.compare_precisions(result.model, batches)
        accuracy = result.evaluation.accuracy
        auto = tlcore.choose_precision(result.model, backbone=backbone, batch=1)
        gate = (f"{auto.precision} ({auto.calibration.gain:.2f}x, {auto.calibration.cosine:.4f})"
                if auto.calibration else auto.describe())
        lines.append(f"| {backbone} {size} px, trained from scratch 4 epochs (val. accuracy {accuracy:.2f}) "
                     f"| {c.images} | {c.top1_agreement:.3f} | {c.max_abs_error:.4f} | {c.min_cosine:.5f} | {gate} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def cached_training() -> list[str]:
    """Training with the frozen-prefix feature cache, its features computed in float32 and in bfloat16."""
    lines = ["| frozen features computed in | `tlcore.train` (build, features, fit, evaluate) | final loss "
             "| val. accuracy | largest weight difference from float32 |", "|---|---|---|---|---|"]
    shapes = tlcore.sample_dataset(per_class=32, size=128, seed=0)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(128, 128, 3), weights=None,
                               trainable_from="block5_conv1", hidden_units=64, dropout=0.0)
    weights = {}
    for precision in ("float32", "bfloat16"):
        with tlcore.forced_precision(precision):
            started = time.perf_counter()
            result = tlcore.train(spec, shapes, tlcore.TrainConfig(epochs=3, batch_size=16, learning_rate=1e-4))
            seconds = time.perf_counter() - started
        assert result.feature_cache
        weights[precision] = result.model.get_weights()
        difference = max(float(np.abs(a - b).max()) for a, b in zip(weights["float32"], weights[precision]))
        lines.append(f"| {precision} | {seconds:.1f} s | {result.history['loss'].iloc[-1]:.4f} "
                     f"| {result.evaluation.accuracy:.3f} | {difference:.2e} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def imagenet_check(names: list[str]) -> list[str]:
    """ImageNet classifiers whose weights are cached here, on the sample's images."""
    lines = []
    for name in names:
        if not tlcore.weights_status(name).cached:
            lines.append(f"- {name}: ImageNet weights not cached here; not checked.")
            continue
        model = tlcore.load_backbone(name, weights="imagenet")
        c = tlcore.compare_precisions(model, [sample_inputs(name, BATCH)])
        lines.append(f"- {name} ImageNet: top-1 agreement {c.top1_agreement:.3f}, max probability error "
                     f"{c.max_abs_error:.4f}, min cosine {c.min_cosine:.5f} ({c.images} images)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-repeats", type=int, default=5)
    parser.add_argument("--backbones", default=",".join(tlcore.BACKBONES))
    parser.add_argument("--no-training", action="store_true", help="skip the trained-model checks")
    parser.add_argument("--no-speed", action="store_true", help="skip the per-backbone timings")
    args = parser.parse_args()
    names = [n for n in args.backbones.split(",") if n]
    machine = tc.machine()
    print(f"CPU: {machine['cpu']}, {machine['cores']} cores, bfloat16 flags: "
          f"{', '.join(machine['bfloat16_flags']) or 'none'}; TensorFlow {machine['tensorflow']}, "
          f"Keras {machine['keras']}; load average before: {os.getloadavg()[0]:.1f}\n")
    if not args.no_speed:
        print("\n".join(speed_table(names, args.repeats, args.batch_repeats)))
        print(f"\nFastest of {args.repeats} single-image and {args.batch_repeats} batch calls per precision, "
              f"alternating; load average after: {os.getloadavg()[0]:.1f}.")
    if not args.no_training:
        print()
        print("\n".join(trained_check()))
        print()
        print("\n".join(cached_training()))
    print()
    print("\n".join(imagenet_check(names)))


if __name__ == "__main__":
    main()
