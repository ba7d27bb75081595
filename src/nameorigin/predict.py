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

import numpy as np
import torch

from . import checkpoint
from .data import encode_names
from .models import batched_log_probs, with_precision
from .text import BadName, fold_checked
from .trust import Trust, check_coverage, estimate_prior, resolve_prior

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
    out_of_scope: float | None = None  # in [0, 1], higher = less like any of the model's languages; None: no detector
    abstained: bool = False  # the answer is unsure; ``predictions`` are still there to look at
    reason: str | None = None  # None | "low-confidence" | "out-of-scope"
    set: list[str] | None = None  # with ``coverage``: the conformal prediction set, most probable first

    def to_dict(self) -> dict:
        d = {"name": self.name, "predictions": self.predictions, "out_of_scope": self.out_of_scope,
             "abstained": self.abstained, "reason": self.reason}
        if self.set is not None:
            d["set"] = self.set
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
        self.trust = Trust.from_checkpoint(ckpt.labels, ckpt.meta, ckpt.tensors)
        self.temperature = self.trust.temperature

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

    def predict(self, names: Iterable[str], top: int = 3, *, attention: bool = False, coverage: float | None = None,
                prior=None, min_confidence: float | None = None,
                max_out_of_scope: float | None = None) -> list[Prediction]:
        """Each name's ``top`` languages with probabilities, its out-of-scope score and whether the answer
        abstains (and why); with ``coverage`` (e.g. 0.9) its conformal prediction set. ``prior``: ``"uniform"``,
        ``"auto"`` (estimated on these names), ``{language: weight}`` or a JSON/CSV file of them. Thresholds
        left None use the checkpoint's. A name that cannot be read gets ``error`` set (and no predictions)
        instead of failing the whole batch."""
        return self.predict_with_prior(names, top, attention=attention, coverage=coverage, prior=prior,
                                       min_confidence=min_confidence, max_out_of_scope=max_out_of_scope)[0]

    def predict_with_prior(self, names: Iterable[str], top: int = 3, *, attention: bool = False,
                           coverage: float | None = None, prior=None, min_confidence: float | None = None,
                           max_out_of_scope: float | None = None) -> tuple[list[Prediction], dict | None]:
        """:meth:`predict`, and the language mix it used (``prior="auto"``: the one estimated), or None.
        ``names`` is a list (or any iterable) of names: for one name use ``predict([name])`` or
        :meth:`predict_one`."""
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
        if not good:
            resolve_prior(prior, self.labels)  # a bad prior is an error even when no name can be read
            check_coverage(coverage)
            return results, None
        folded = [results[i].folded for i in good]
        tokens, lengths = encode_names(folded)
        lp, att = batched_log_probs(self.model, tokens, lengths, batch_size=self.batch_size,
                                    with_attention=attention)
        r = self.trust.apply(lp, folded, coverage=coverage, prior=prior, min_confidence=min_confidence,
                             max_out_of_scope=max_out_of_scope)
        probs = torch.from_numpy(r.probabilities)
        k = max(1, min(top, len(self.labels)))
        values, indices = probs.topk(k, dim=1)
        values, indices = values.tolist(), indices.tolist()
        oos = r.out_of_scope.tolist() if r.out_of_scope is not None else [None] * len(good)
        abstained = r.abstained.tolist()
        order = probs.argsort(dim=1, descending=True).tolist() if r.sets is not None else None
        for row, i in enumerate(good):
            p = results[i]
            p.predictions = [{"language": self.labels[j], "probability": v} for v, j in zip(values[row], indices[row])]
            p.out_of_scope, p.abstained, p.reason = oos[row], abstained[row], r.reason[row]
            if order is not None:
                p.set = [self.labels[j] for j in order[row] if r.sets[row, j]]
            if att is not None:
                p.attention = att[row].tolist()
        used = dict(zip(self.labels, r.prior.tolist())) if r.prior is not None else None
        return results, used

    def estimate_prior(self, names: Iterable[str], *, chunk: int = 8192) -> dict[str, float] | None:
        """The language mix of ``names`` by EM (``prior="auto"`` over all of them, not chunk by chunk); reads
        them once, keeping only their (N, C) probabilities. None when the checkpoint has no training prior."""
        if self.trust.train_prior is None:
            return None
        it, parts = iter(names), []
        while batch := list(itertools.islice(it, chunk)):
            folded = []
            for n in batch:
                try:
                    folded.append(fold_checked(n))
                except BadName:
                    continue
            if folded:
                tokens, lengths = encode_names(folded)
                lp, _ = batched_log_probs(self.model, tokens, lengths, batch_size=self.batch_size)
                parts.append(self.trust.probabilities(lp).astype(np.float32))
        probs = np.concatenate(parts) if parts else np.zeros((0, len(self.labels)))
        return dict(zip(self.labels, estimate_prior(probs.astype(np.float64), self.trust.train_prior).tolist()))

    def predict_one(self, name: str, top: int = 3, **trust_options) -> Prediction:
        result = self.predict([name], top, **trust_options)[0]
        if result.error:
            raise BadName(result.error)
        return result

    def stream(self, names: Iterable[str], top: int = 3, *, chunk: int = 8192, **trust_options) -> Iterator[Prediction]:
        """Predict lazily over any iterable, ``chunk`` names at a time: memory stays flat. Line ends are
        stripped and blank lines skipped, so an open text file works as it is: ``stream(open("names.txt"))``.
        ``trust_options`` go to :meth:`predict`; give ``prior="auto"`` as the mix :meth:`estimate_prior` found
        over the whole input, else each chunk estimates its own."""
        it = (n.rstrip("\r\n") for n in names if n.strip())
        while batch := list(itertools.islice(it, chunk)):
            yield from self.predict(batch, top, **trust_options)


def write_csv_rows(predictions: Iterable[tuple[int, Prediction]], out: io.TextIOBase, top: int, *,
                   sets: bool = False) -> int:
    """Write ``line,name,language_1,probability_1,...,abstained,reason,out_of_scope[,set],error`` rows (``set``:
    the prediction set's languages joined by ``|``); returns how many were written."""
    writer = csv.writer(out, lineterminator="\n")
    header = ["line", "name"]
    for k in range(1, top + 1):
        header += [f"language_{k}", f"probability_{k}"]
    writer.writerow(header + ["abstained", "reason", "out_of_scope"] + (["set"] if sets else []) + ["error"])
    n = 0
    for lineno, p in predictions:
        row: list = [lineno, p.name]
        for k in range(top):
            if k < len(p.predictions):
                row += [p.predictions[k]["language"], f"{p.predictions[k]['probability']:.6f}"]
            else:
                row += ["", ""]
        row += ["" if p.error else str(p.abstained).lower(), p.reason or "",
                "" if p.out_of_scope is None else f"{p.out_of_scope:.4f}"]
        if sets:
            row.append("|".join(p.set or []))
        writer.writerow(row + [p.error or ""])
        n += 1
    return n
