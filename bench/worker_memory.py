"""Memory of the worker and of the server while training on 2,000, 10,000 and 20,000 images.

Run: .venv/bin/python bench/worker_memory.py [sizes...]

This process plays the server: it queues each job on a JobQueue (Ray, local
instance) and samples its own resident memory every 50 ms while the job runs.
The worker reports its own peak (sampled every 50 ms by its watchdog). Each
dataset is the built-in sample drawn at 224 px (stored once under
/tmp/tl-bench, so a second run of the benchmark skips the drawing); the model
is MobileNetV2 at 224x224, base frozen, random weights (no download here), one
epoch, batch 32. A first job of 40 images warms the server's Ray client up
(its one-time growth is printed apart). The feature cache is emptied before each size, so the worker
decodes and runs the base over every image: the whole streaming path.
Targets: worker peak grows under 10% from 2,000 to 20,000 images; the server
grows under 50 MB; time per image roughly constant.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_DATA_DIR", "/tmp/tl-bench")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tlcore  # noqa: E402

MB = 2**20
SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(224, 224, 3), weights=None)


def resident() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(images: int, queue: tlcore.JobQueue, store: tlcore.RunStore) -> dict:
    dataset = tlcore.sample_dataset(per_class=images // 4, size=224, seed=7)
    shutil.rmtree(tlcore.load_settings().data_dir / "features", ignore_errors=True)
    before, peak, done = resident(), resident(), threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    job = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1, batch_size=32), store)
    snapshot = job.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    assert snapshot.state == "done", snapshot.error
    seconds = float(store.get(job.run_id).result.seconds)
    return {"images": images, "worker_peak": snapshot.peak_memory, "server_growth": peak - before,
            "train_seconds": seconds, "wall": wall, "per_image_ms": 1000 * seconds / images}


def main(sizes: list[int]) -> None:
    tlcore.connect_ray()
    queue, store = tlcore.JobQueue(), tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    warm = run(40, queue, store)  # Ray's client side grows once, on a server's first job
    print(f"warm-up job of 40 images: server {warm['server_growth'] / MB:+,.1f} MB (once per server)", flush=True)
    rows = []
    for images in sizes:
        started = time.perf_counter()
        tlcore.sample_dataset(per_class=images // 4, size=224, seed=7)
        print(f"dataset of {images:,} images ready in {time.perf_counter() - started:.0f} s", flush=True)
        rows.append(run(images, queue, store))
        row = rows[-1]
        print(f"{row['images']:>7,} images: worker peak {row['worker_peak'] / MB:,.0f} MB, server "
              f"{row['server_growth'] / MB:+,.1f} MB, training {row['train_seconds']:.1f} s "
              f"({row['per_image_ms']:.1f} ms/image), wall {row['wall']:.1f} s", flush=True)
    print("\n| images | worker peak | server growth | training (in the worker) | per image |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['images']:,} | {row['worker_peak'] / MB:,.0f} MB | {row['server_growth'] / MB:+,.1f} MB | "
              f"{row['train_seconds']:.1f} s | {row['per_image_ms']:.1f} ms |")
    first, last = rows[0], rows[-1]
    growth = last["worker_peak"] / first["worker_peak"] - 1
    print(f"\nworker peak from {first['images']:,} to {last['images']:,} images: {growth:+.1%} (target: under +10%)")
    print(f"largest server growth: {max(r['server_growth'] for r in rows) / MB:+.1f} MB (target: under 50 MB)")


if __name__ == "__main__":
    main([int(n) for n in sys.argv[1:]] or [2_000, 10_000, 20_000])
