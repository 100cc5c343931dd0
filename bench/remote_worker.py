"""Training on a machine without the server's disk: what the dataset's trip costs, and the remote path's overhead.

Run: .venv/bin/python bench/remote_worker.py [images] [side]

Starts a Ray cluster of two nodes on loopback (``tests/two_nodes.py``: a head, which shares this
process's data folder, and a second node with its own empty ``TL_DATA_DIR`` and the resource
``tl_remote``), then, as the server:

1. Transfer: stores ``images`` (default 2,000) photo-like JPEGs of ``side`` px (default 224) in 4
   classes, starts a training worker on the second node and sends it the dataset
   (``tlcore.training.jobs.send_dataset``: manifest, parts through the object store, digest checked,
   renamed into place); prints the bytes and seconds, and the same for a second send (nothing travels).
2. Overhead: a small job (MobileNetV2 at 32 px, weights=None, 48 images, 2 epochs, features cached)
   as a notebook calls it (``tlcore.train`` in this process), as a job on the head (the local path:
   same data folder, no transfer), and as jobs on the second node, first (dataset and feature file
   made there) and again (both kept there). Wall time from submit to the run stored.
"""

import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_PRECISION", "float32")
os.environ["TL_DATA_DIR"] = tempfile.mkdtemp(prefix="tl-bench-remote-")  # the server's: the head shares it
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from two_nodes import REMOTE_RESOURCE, two_nodes  # noqa: E402

import tlcore  # noqa: E402


def photo_like(rng: np.random.Generator, side: int) -> bytes:
    """A JPEG (quality 90) of smooth colour fields with texture: sized like a photo, not like a drawing."""
    low = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(low).resize((side, side), Image.BICUBIC), dtype=np.float32)
    image += rng.normal(0, 18, image.shape)
    encoded = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(encoded, "JPEG", quality=90)
    return encoded.getvalue()


def main(images: int = 2000, side: int = 224) -> None:
    rng = np.random.default_rng(0)
    per_class = images // 4
    dataset = tlcore.load_dataset({name: [photo_like(rng, side) for _ in range(per_class)]
                                   for name in ("a", "b", "c", "d")})
    stored = sum(path.stat().st_size for path in dataset.files)
    print(f"dataset: {len(dataset)} images at {side} px, {stored / 1e6:.1f} MB stored (JPEG as uploaded)")
    small = tlcore.sample_dataset(per_class=12, size=32, seed=4)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    config = tlcore.TrainConfig(epochs=2, batch_size=8)

    started = time.perf_counter()
    tlcore.train(spec, small, config)
    print(f"small job, tlcore.train in this process (a notebook): {time.perf_counter() - started:.1f} s")

    with two_nodes(object_store=200_000_000) as cluster:
        os.environ.update(cluster.env, TL_RAY_ADDRESS=cluster.address)
        from tlcore.training.jobs import send_dataset
        from tlcore.training.worker import connect, ray_module, training_worker, worker_environment

        connect()
        ray = ray_module()
        worker = training_worker().options(num_cpus=1, resources={REMOTE_RESOURCE: 1}).remote(
            worker_environment(), 2**40, "/nonexistent/note.json")
        ray.get(worker.where.remote())  # started: its start is not the transfer's time
        for attempt in ("first", "again"):
            started = time.perf_counter()
            sent = send_dataset(ray, worker, dataset)
            seconds = time.perf_counter() - started
            rate = f", {sent / 1e6 / seconds:.0f} MB/s" if sent else ""
            print(f"transfer to the second node, {attempt}: {sent:,} bytes in {seconds:.2f} s{rate}")
        ray.kill(worker)

        store = tlcore.RunStore(Path(os.environ["TL_DATA_DIR"]) / "runs")
        for where, queue in (("head (local path)", tlcore.JobQueue(resources={"node:__internal_head__": 0.01})),
                             ("second node, first", tlcore.JobQueue(resources={REMOTE_RESOURCE: 1})),
                             ("second node, again", tlcore.JobQueue(resources={REMOTE_RESOURCE: 1}))):
            started = time.perf_counter()
            snapshot = queue.submit(spec, small, config, store).wait(600)
            seconds = time.perf_counter() - started
            assert snapshot.state == "done", snapshot.error
            print(f"small job on the {where}: {seconds:.1f} s, {snapshot.transferred:,} bytes sent")
        tlcore.disconnect_ray()
    shutil.rmtree(os.environ["TL_DATA_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
