"""The errors tlcore raises.

Every message follows the Keras grammar: the rule, what is accepted, and what
was received, e.g. "Input size must be at least 32x32 for VGG16 with
include_top=False. Received: input_shape=(16, 16, 3)".
"""


class TLError(Exception):
    """Base class of every error tlcore raises on purpose."""


class ImageError(TLError, ValueError):
    """A file or buffer that is not a usable image."""


class ShapeError(TLError, ValueError):
    """An input shape, pooling or head that does not fit the backbone."""


class WeightsError(TLError):
    """Weights that cannot be found, downloaded or loaded into the model."""


class DatasetError(TLError, ValueError):
    """A dataset folder or archive that cannot be used for training."""


class ModelFileError(TLError, ValueError):
    """A saved model file that cannot be loaded safely."""


class ConfigError(TLError, ValueError):
    """A choice (layer name, pooling, head size...) outside what is accepted."""


class BudgetError(ConfigError):
    """A choice over one of this server's budgets (a ``TL_*`` limit), refused before allocation."""


class HistoryError(TLError, ValueError):
    """A run's history table from elsewhere (a bundle, a worker) that is not as Transfer Lab writes it."""


class UnknownNameError(TLError, KeyError):
    """A name (a run id, a backbone) that names nothing here; a ``KeyError`` too, whose text is its message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkerError(TLError):
    """A worker process that ended before answering (crashed or killed), or whose answer cannot be kept."""


class StoppedBeforeTraining(TLError):
    """A run stopped before any of its workers started: nothing was trained, nothing is kept but its record."""
