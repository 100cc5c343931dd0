"""A run's TensorBoard logs, written by TensorFlow's and TensorBoard's own writers as the run trains.

Layout, under the run's folder (so ``tensorboard --logdir <data folder>/runs`` shows every run)::

    tensorboard/train/        epoch_loss, epoch_accuracy, epoch_learning_rate per epoch;
                              the model's graph ("keras", the Graphs tab)
    tensorboard/validation/   epoch_loss, epoch_accuracy per epoch; the confusion matrix
                              (an image, at the last epoch); the embedding projector's
                              files: the validation images' feature vectors (the input of
                              the classifier layer), their labels and thumbnails

Scalars are stepped by the run's epoch counted over both phases (1, 2, ...), the history's
row number plus one, so a fine-tune phase continues the curves of the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image, ImageDraw

PROJECTOR_LIMIT = 500
"""Validation images shown in the embedding projector, at most (the first ones, in dataset order)."""
PROJECTOR_VALUES = 2_000_000
"""Numbers in the projector's vectors, at most (about 20 MB of text): wide vectors show fewer images."""
THUMBNAIL = 32
"""Side of each projector thumbnail, pixels."""
CELL = 48
"""Side of a confusion-matrix cell in its image, pixels."""


class EpochScalars(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, stepping by the run's epoch over both phases.

    Keras's callback counts epochs from 0 in each ``fit``; a run fits twice when it
    fine-tunes, so ``offset`` (epochs already logged) is added, and 1, making the step of
    a history row its 1-based place in the history. The graph is written once, for
    the whole model, by ``write_final_logs`` (a phase may fit only the layers above a
    cached prefix).
    """

    def __init__(self, log_dir: str | Path, offset: int = 0):
        super().__init__(log_dir=str(log_dir), write_graph=False, profile_batch=0, update_freq="epoch")
        self.offset = offset

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(self.offset + epoch + 1, logs)

    def on_test_end(self, logs=None):
        """Keras also writes each validation as ``evaluation_*_vs_iterations``, stepped by the optimizer's
        count, which starts again with the fine-tuning phase's optimizer (two values at one step); the
        validation's epoch scalars say the same, stepped by the run's epoch."""
        super().on_test_end({})


def penultimate_vectors(model: keras.Model, batches: Iterable[np.ndarray]) -> np.ndarray:
    """What ``model``'s last layer receives for each row of ``batches`` (the feature vector it classifies).

    ``model`` is a chain (an input, then layers one after the other), as every transfer
    model and its trainable rest above a cached prefix are.
    """
    layers = model.layers[1:-1]
    out = []
    for x in batches:
        for layer in layers:
            x = layer(x, training=False)
        out.append(keras.ops.convert_to_numpy(x).reshape(len(x), -1))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def confusion_image(confusion: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """The confusion matrix drawn as an RGB uint8 array: rows true class, columns predicted, counts written in.

    Each row is shaded by its share of the row (dark blue for all of it); class names
    label the rows (true) and, by their index, the columns (predicted).
    """
    confusion = np.asarray(confusion)
    n = len(class_names)
    margin = 8 + 7 * min(max((len(name) for name in class_names), default=1), 24)
    width, height = margin + n * CELL + 8, 24 + n * CELL + 8
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 6), "predicted (columns: class index) / true (rows)", fill="black")
    totals = confusion.sum(axis=1, keepdims=True).clip(min=1)
    for row in range(n):
        top = 24 + row * CELL
        draw.text((4, top + CELL // 2 - 6), f"{row}: {class_names[row][:24]}", fill="black")
        for column in range(n):
            share = confusion[row, column] / totals[row, 0]
            shade = tuple(int(255 - share * (255 - c)) for c in (8, 48, 107))
            left = margin + column * CELL
            draw.rectangle((left, top, left + CELL - 1, top + CELL - 1), fill=shade, outline="grey")
            draw.text((left + 6, top + CELL // 2 - 6), str(int(confusion[row, column])),
                      fill="white" if share > 0.5 else "black")
    return np.asarray(image, dtype=np.uint8)


def _sprite(paths: Sequence[Path | None]) -> Image.Image:
    """Thumbnails of ``paths`` in a square grid, row by row (grey where an image is gone)."""
    side = max(int(np.ceil(np.sqrt(len(paths)))), 1)
    sprite = Image.new("RGB", (side * THUMBNAIL, side * THUMBNAIL), "white")
    for i, path in enumerate(paths):
        thumb = Image.new("RGB", (THUMBNAIL, THUMBNAIL), "grey")
        if path is not None:
            try:
                with Image.open(path) as opened:
                    thumb = opened.convert("RGB")
                    thumb.thumbnail((THUMBNAIL, THUMBNAIL))
            except (OSError, ValueError, Image.DecompressionBombError):
                pass
        sprite.paste(thumb, ((i % side) * THUMBNAIL, (i // side) * THUMBNAIL))
    return sprite


def write_projector(log_dir: str | Path, vectors: np.ndarray, labels: Sequence[str], predicted: Sequence[str],
                    paths: Sequence[Path | None]) -> Path:
    """The embedding projector's files for ``vectors`` (one row per image) in ``log_dir``/validation.

    Writes the vectors and their metadata (true and predicted class) as TSV, the
    thumbnails as one sprite image, and the projector's config through
    ``tensorboard.plugins.projector``; returns the folder. Only the first rows that keep
    within ``PROJECTOR_VALUES`` numbers are written (all of them unless the vectors are very wide).
    """
    from tensorboard.plugins import projector

    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    kept = min(len(vectors), max(1, PROJECTOR_VALUES // max(vectors.shape[1], 1)))
    vectors, labels, predicted, paths = vectors[:kept], labels[:kept], predicted[:kept], paths[:kept]

    folder = Path(log_dir) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "embedding.tsv", vectors, delimiter="\t", fmt="%.6g")
    clean = lambda text: str(text).replace("\t", " ").replace("\n", " ")
    (folder / "metadata.tsv").write_text(
        "label\tpredicted\n" + "".join(f"{clean(a)}\t{clean(b)}\n" for a, b in zip(labels, predicted)),
        encoding="utf-8")
    _sprite(paths).save(folder / "sprite.png")
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "validation_features"
    embedding.tensor_path = "embedding.tsv"
    embedding.metadata_path = "metadata.tsv"
    embedding.sprite.image_path = "sprite.png"
    embedding.sprite.single_image_dim.extend([THUMBNAIL, THUMBNAIL])
    projector.visualize_embeddings(str(folder), config)
    return folder


def write_history_scalars(log_dir: str | Path, history: pd.DataFrame, learning_rate: float) -> None:
    """A run's history as the epoch scalars ``EpochScalars`` writes (train/: ``epoch_loss``, ``epoch_accuracy``,
    ``epoch_learning_rate``; validation/: ``epoch_loss``, ``epoch_accuracy``), stepped by the history's row from 1:
    for a run across workers, whose workers write no logs of their own."""
    log_dir = Path(log_dir)
    for part, prefix in (("train", ""), ("validation", "val_")):
        writer = tf.summary.create_file_writer(str(log_dir / part))
        with writer.as_default():
            for step, row in enumerate(history.itertuples(index=False), start=1):
                for name in ("loss", "accuracy"):
                    value = getattr(row, prefix + name)
                    if value is not None and np.isfinite(value):
                        tf.summary.scalar(f"epoch_{name}", float(value), step=step)
                if part == "train":
                    tf.summary.scalar("epoch_learning_rate", float(learning_rate), step=step)
        writer.close()


def write_final_logs(log_dir: str | Path, model: keras.Model, confusion: np.ndarray,
                     class_names: Sequence[str], step: int) -> None:
    """The model's graph (train/) and the confusion matrix as an image at ``step`` (validation/)."""
    log_dir = Path(log_dir)
    graph = keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=True, profile_batch=0)
    graph.set_model(model)  # writes the model's config, which the Graphs tab draws
    graph.on_train_end()  # closes its writers
    writer = tf.summary.create_file_writer(str(log_dir / "validation"))
    with writer.as_default():
        tf.summary.image("confusion_matrix", confusion_image(confusion, class_names)[None], step=step,
                         description="Rows: true class; columns: predicted class; counts of validation images.")
    writer.close()
