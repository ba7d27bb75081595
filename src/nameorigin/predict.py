"""``Predictor``: names in, ranked languages (and attention) out; streaming over files."""
from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch

from . import checkpoint
from .data import encode_names
from .models import batched_log_probs, with_precision
from .text import BadName, fold_checked

DEFAULT_MODEL = "default.safetensors"


def default_model_path() -> Path:
    """The model bundled in the package."""
    return Path(str(resources.files("nameorigin") / "assets" / DEFAULT_MODEL))


class Probabilities(NamedTuple):
    """What :meth:`Predictor.probabilities` returns."""

    probs: torch.Tensor  # (N, C), each row summing to 1
    attention: list[torch.Tensor] | None  # each name's weights over its characters, or None


@dataclass
class Prediction:
    name: str
    predictions: list[dict]  # [{"language", "probability"}], most probable first
    folded: str = ""
    attention: list[float] | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "predictions": self.predictions}
        if self.error:
            d["error"] = self.error
        return d


class Predictor:
    """Rank languages for names with a trained model.

    >>> p = Predictor.load()            # the bundled model
    >>> p.predict(["Hinton"], top=3)[0].predictions[0]["language"]
    """

    def __init__(self, ckpt: checkpoint.Checkpoint, *, batch_size: int = 512, precision: str = "fp32"):
        self.checkpoint = ckpt
        self.n_parameters = sum(p.numel() for p in ckpt.model.parameters())
        self.precision = precision
        self.model = with_precision(ckpt.model.eval(), precision)
        self.labels = ckpt.labels
        self.batch_size = batch_size
        self.temperature = float(ckpt.meta.get("temperature", 1.0) or 1.0)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, device: str = "cpu", **kwargs) -> "Predictor":
        """``kwargs``: ``batch_size``, ``precision`` (``fp32``, ``bf16`` or ``int8``; see :func:`models.with_precision`)."""
        return cls(checkpoint.load(path or default_model_path(), device=device), **kwargs)

    @property
    def has_attention(self) -> bool:
        return self.model.has_attention

    def probabilities(self, folded: list[str], *, with_attention: bool = False) -> Probabilities:
        """For already-folded names: ``Probabilities(probs, attention)``, ``probs`` (N, C) summing to 1 over
        the languages of :attr:`labels` (temperature applied); ``attention`` a list of each name's weights over
        its characters with ``with_attention`` on a model that has attention, else None."""
        tokens, lengths = encode_names(folded)
        lp, att = batched_log_probs(self.model, tokens, lengths, batch_size=self.batch_size,
                                    with_attention=with_attention)
        return Probabilities(torch.softmax(lp / self.temperature, dim=1), att)

    def predict(self, names: Iterable[str], top: int = 3, *, attention: bool = False) -> list[Prediction]:
        """Each name's ``top`` languages with probabilities. A name that cannot be read gets ``error`` set
        (and no predictions) instead of failing the whole batch. ``names`` is a list (or any iterable) of
        names: for one name use ``predict([name])`` or :meth:`predict_one`."""
        if isinstance(names, (str, bytes)):
            raise TypeError(f"predict takes a list of names, not one string ({names[:20]!r}): use "
                            "predict([name]) or predict_one(name)")
        names = list(names)
        results = [Prediction(name=n, predictions=[]) for n in names]
        good: list[int] = []
        for i, n in enumerate(names):
            try:
                results[i].folded = fold_checked(n)
                good.append(i)
            except BadName as e:
                results[i].error = str(e)
        if good:
            probs, att = self.probabilities([results[i].folded for i in good], with_attention=attention)
            k = max(1, min(top, len(self.labels)))
            values, indices = probs.topk(k, dim=1)
            values, indices = values.tolist(), indices.tolist()
            for row, i in enumerate(good):
                results[i].predictions = [{"language": self.labels[j], "probability": v}
                                          for v, j in zip(values[row], indices[row])]
                if att is not None:
                    results[i].attention = att[row].tolist()
        return results

    def predict_one(self, name: str, top: int = 3) -> Prediction:
        result = self.predict([name], top)[0]
        if result.error:
            raise BadName(result.error)
        return result

    def stream(self, names: Iterable[str], top: int = 3, *, chunk: int = 8192) -> Iterator[Prediction]:
        """Predict lazily over any iterable, ``chunk`` names at a time: memory stays flat. Line ends are
        stripped and blank lines skipped, so an open text file works as it is: ``stream(open("names.txt"))``."""
        it = (n.rstrip("\r\n") for n in names if n.strip())
        while batch := list(itertools.islice(it, chunk)):
            yield from self.predict(batch, top)


def write_csv_rows(predictions: Iterable[tuple[int, Prediction]], out: io.TextIOBase, top: int) -> int:
    """Write ``line,name,language_1,probability_1,...,error`` rows; returns how many were written."""
    writer = csv.writer(out, lineterminator="\n")
    header = ["line", "name"]
    for k in range(1, top + 1):
        header += [f"language_{k}", f"probability_{k}"]
    writer.writerow(header + ["error"])
    n = 0
    for lineno, p in predictions:
        row: list = [lineno, p.name]
        for k in range(top):
            if k < len(p.predictions):
                row += [p.predictions[k]["language"], f"{p.predictions[k]['probability']:.6f}"]
            else:
                row += ["", ""]
        writer.writerow(row + [p.error or ""])
        n += 1
    return n
