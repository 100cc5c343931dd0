"""Every limit and location tlcore uses, read from one place.

Each setting has a documented default and can be changed with an environment
variable named ``TL_<NAME>`` (for example ``TL_MAX_IMAGE_PIXELS=20000000``).
The defaults suit a shared server of 2 cores and 24 GB; every budget is
checked before the memory, disk or time it protects is spent.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Settings:
    """Limits and locations.

    Attributes:
        data_dir: where runs, datasets, feature caches and uploaded files are stored.
        max_data_gb: the data folder may hold at most this many GB (uploads are refused past it).
        dataset_roots: server folders a visitor may train from (``TL_DATASET_ROOTS``,
            separated by ``:``); none, the default, turns "Folder on the server" off.
        max_image_pixels: images with more pixels are refused before decoding.
        min_image_side: images with a smaller side are refused.
        max_jpeg_scans: JPEGs with more scans are refused before decoding (each
            scan of a progressive JPEG is a full decoding pass).
        max_archive_files: dataset archives with more members are refused.
        max_archive_bytes: dataset archives that unpack to more bytes are refused.
        max_archive_depth: dataset archives with deeper folders are refused.
        max_compression_ratio: archive members compressed more than this are refused.
        max_dataset_images: datasets with more images are refused.
        max_dataset_pixels: datasets whose stored images hold more pixels in all are refused.
        max_decoded_pixels: a dataset or a batch to classify whose images hold more pixels in all, as
            decoded, is refused: each image is counted from its header before it is decoded (a JPEG at
            the reduced scale it is decoded at for storing). Decoding is the CPU's work: a 127 KB PNG
            of 40 million pixels took 0.65 s here, so the default, 20 billion, is some 5 minutes of one core.
        max_model_params: models (Build specs, uploaded ``.keras`` files) with more
            parameters are refused before any weight is allocated.
        max_activation_mb: a model whose activations for one image need more MB is refused;
            and every forward pass keeps to it: a pass over n images runs only if n times
            one image's activations fit, so batch work (Batch, Features, the feature cache,
            evaluation) and the bfloat16 calibration run in passes of as many images as fit.
        max_gflops: a model that takes more GFLOPs (billions of multiply-adds, as the Keras
            applications table counts them: VGG16 at 224x224 takes 15.5) for one image is
            refused before its first pass, whether built (Build specs) or uploaded (``.keras``
            files). The default, 600, fits every registry backbone at the largest input the
            other budgets allow (VGG19 at 1024x1024: 408) with any Build head within
            TL_MAX_MODEL_PARAMS; a 3 MB upload of one 63x63 convolution at 1024x1024 (799
            GFLOPs, minutes of CPU an image) is refused.
        max_model_file_mb: a ``.keras`` file that unpacks to more MB is refused.
        max_model_config_mb: a ``.keras`` file whose ``config.json`` or ``metadata.json`` is larger is refused.
        max_model_file_members: a ``.keras`` file with more archive members is refused.
        max_model_layers: a ``.keras`` file whose model takes more layer calls to build is refused, counted
            from its ``config.json`` before Keras builds any: each layer once for each call in its graph, and a
            ``Sequential`` model's layers again each time Keras adds a layer after them while loading it (a
            Sequential of 503 layers: 126,253 calls, 35 s of CPU here; 16,000 functional layers took 13 s).
            The default, 6,000, builds a ``Sequential([EfficientNetB7, pooling, Dense, Dense])`` (4,066 calls).
        job_memory_gb: a training job whose estimate exceeds this is refused, and a
            training worker that grows past it is stopped (its run fails, the server stays up).
        max_upload_pass_seconds: an uploaded ``.keras`` model's passes (loading it, a prediction
            with its first-pass calibration, a heatmap, a batch's pass) run in a worker of their
            own; one that runs longer than this is stopped (its worker ends) and the visitor is told.
        upload_worker_base_mb: what a worker for an uploaded model may use besides what its
            model's measured cost needs (Python, TensorFlow, Ray: about 600 MB measured); past
            the sum (at most ``job_memory_gb``), the worker is stopped and the visitor is told.
        upload_worker_idle_seconds: a worker for an uploaded model that answered no pass for
            this long ends, giving its CPU back (the next pass starts a new one and loads again).
        max_training_jobs: how many training jobs run at once.
        max_queued_jobs: how many training jobs may wait in line.
        max_jobs_per_person: how many training jobs one person may have waiting in line and
            training at once (a job and its run from scratch count two), so no one fills the
            line; jobs without an owner (a notebook's own queue) are not counted. Set it to
            ``max_queued_jobs`` or more to turn it off.
        ray_address: an existing Ray cluster to train on (``TL_RAY_ADDRESS``); empty
            starts a local Ray instance on 127.0.0.1.
        job_resources: Ray custom resources every training job asks for, as
            ``name=amount`` pairs separated by commas (``TL_JOB_RESOURCES=gpu_box=1``): jobs
            then train only on nodes started with ``--resources '{"gpu_box": 1}'``; empty asks for none.
        precision: what inference (Predict, Features, the feature cache) computes in:
            ``auto`` (bfloat16 where measured faster on this machine), ``float32`` or ``bfloat16``.
        password: a shared password every visitor types before any page (``TL_PASSWORD``;
            a ``password`` in ``.streamlit/secrets.toml`` works too); empty, the default,
            asks for none. Ignored when Streamlit's OIDC login (``[auth]`` in the secrets) is set up.
        read_only: 1 serves a public demo: predict, look and explore, but no training, no
            uploads of models or weights and no deletions; 0, the default, allows everything.
        admins: names that may stop and delete every run and stop every demo, separated by
            commas (case ignored): OIDC e-mail addresses, or names typed on the password form.
            With a shared password a name is claimed, not proven: an admin there should use a
            name only admins know, or the app should use OIDC sign-in. Everyone else manages
            only the runs they started.
        password_tries_per_address: wrong passwords one client address may try in an hour,
            across all its sessions and server restarts (``tlcore.core.tries``).
        password_tries_per_hour: wrong passwords the whole server accepts in an hour from all
            addresses together; past it, every address waits for the oldest try to age out.
        max_map_images: a dataset map (Features) places at most this many images, a
            stratified, seeded subset of larger datasets.
        max_map_feature_mb: feature vectors held at once (a dataset map, the Features page's
            images) may take at most this many MB in all (images x values x 4 bytes), checked
            before any image is read.
        show_server_paths: 1, the default, shows server paths (the Keras cache, allowed
            folders) to a browser on the server's own machine, told by its connection (a
            loopback address with no proxy header, ``tlcore.is_local_client``); 0 shows them to
            no one (for a reverse proxy on the same machine that adds no X-Forwarded-For).
        default_model: what a fresh visit classifies with (``TL_DEFAULT_MODEL``): ``auto``, the
            default (ImageNet when its weights are on this server or can be downloaded, else the
            newest trained run, else random weights), ``imagenet``, ``newest-run``, ``random``,
            or a run's id. A link's own choice always wins.
        lite_answers: 1, the default, answers Predict's top-5 for a pretrained or untrained
            registry network with its LiteRT copy (float32, written once per network and weights in
            ``TL_DATA_DIR/lite`` by the first Keras load, MobileNetV2 14 MB, VGG16 553 MB), so the first
            answer after a server start does not wait for TensorFlow's import; 0 always answers with
            Keras and writes no copy. ``TL_PRECISION=bfloat16`` answers with Keras too.
    """

    data_dir: Path = Path.home() / ".transfer-lab"
    max_data_gb: float = 50.0
    dataset_roots: tuple[Path, ...] = ()
    max_image_pixels: int = 40_000_000
    min_image_side: int = 8
    max_jpeg_scans: int = 100
    max_archive_files: int = 20_000
    max_archive_bytes: int = 2_000_000_000
    max_archive_depth: int = 8
    max_compression_ratio: int = 100
    max_dataset_images: int = 50_000
    max_dataset_pixels: int = 4_000_000_000
    max_decoded_pixels: int = 20_000_000_000
    max_model_params: int = 160_000_000
    max_activation_mb: int = 2_048
    max_gflops: int = 600
    max_model_file_mb: int = 1_024
    max_model_config_mb: int = 16
    max_model_file_members: int = 64
    max_model_layers: int = 6_000
    job_memory_gb: float = 12.0
    max_upload_pass_seconds: float = 120.0
    upload_worker_base_mb: int = 1_024
    upload_worker_idle_seconds: float = 300.0
    max_training_jobs: int = 1
    max_queued_jobs: int = 8
    max_jobs_per_person: int = 3
    ray_address: str = ""
    job_resources: str = ""
    precision: str = "auto"
    password: str = dataclasses.field(default="", repr=False)
    read_only: int = 0
    admins: str = ""
    password_tries_per_address: int = 20
    password_tries_per_hour: int = 200
    max_map_images: int = 400
    max_map_feature_mb: int = 256
    show_server_paths: int = 1
    default_model: str = "auto"
    lite_answers: int = 1


def _from_env(field: dataclasses.Field, environ: dict[str, str]) -> object:
    name = f"TL_{field.name.upper()}"
    raw = environ.get(name)
    if raw is None:
        return field.default
    kind = field.type
    if kind in ("Path", Path):
        return Path(raw).expanduser()
    if kind == "tuple[Path, ...]":
        return tuple(Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip())
    if kind in ("str", str):
        return raw.strip()
    number = float if kind in ("float", float) else int
    try:
        value = number(raw)
    except ValueError:
        expected = "a number" if number is float else "a whole number"
        raise ValueError(f"Setting {name} must be {expected}. Received: {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Setting {name} must be a finite number, 0 or more. Received: {raw!r}")
    return value


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``TL_*`` environment variables over the defaults."""
    environ = dict(os.environ if environ is None else environ)
    return Settings(**{f.name: _from_env(f, environ) for f in dataclasses.fields(Settings)})


def keras_cache_dir() -> Path:
    """The folder where Keras caches downloaded model weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"
