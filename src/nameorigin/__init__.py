"""nameorigin: which language a name comes from, with character-level networks.

Predict with :class:`Predictor`; train, evaluate, compare and plot from Python with :func:`load_names`,
:func:`split_names`, :func:`fit` (or :func:`train`), :func:`evaluate`, :func:`compare`, :func:`plot_losses`,
:func:`plot_attention` and
:func:`plot_confusion` (see :mod:`nameorigin.api`); tables with :func:`predict_frame`.
"""

from .frame import predict_frame
from .predict import Prediction, Predictor
from .text import fold

__version__ = "0.1.0"  # the one place the version is stated (pyproject.toml reads it)
_API = (
    "Evaluation",
    "Trained",
    "compare",
    "evaluate",
    "fit",
    "load_names",
    "plot_attention",
    "plot_confusion",
    "plot_losses",
    "split_names",
    "train",
)
__all__ = ["Predictor", "Prediction", "predict_frame", "__version__", "fold", *_API]


def __getattr__(name: str):
    """The training API, imported on first use (it brings matplotlib and the trainers; prediction does not)."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'nameorigin' has no attribute {name!r}")
