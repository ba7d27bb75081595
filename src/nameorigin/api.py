"""The Python training API: load and split names, train, evaluate, compare and plot, without the command line.

>>> import nameorigin
>>> pairs = nameorigin.load_names()                        # NAMEORIGIN_DATA, or the tutorial's archive
>>> parts = nameorigin.split_names(pairs)                  # leak-free 80/10/10 by distinct name
>>> gru = nameorigin.fit(parts, model="gru", epochs=5)     # the batched trainer
>>> rnn = nameorigin.fit(parts, preset="worksheet-rnn", iters=5000)   # the worksheet's loop
>>> gru.evaluate(parts.test)["macro_f1"], gru.predictor.predict(["Hinton"])[0].predictions[0]
>>> nameorigin.plot_losses({"gru": gru, "rnn": rnn})
>>> gru.save("gru.safetensors")                            # the same file ``nameorigin train`` writes

Everything here calls the modules the command line calls (:mod:`.data`, :mod:`.training`,
:mod:`.experiments`, :mod:`.plots`); nothing is trained or written that a caller did not ask for.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from matplotlib.figure import Figure

from . import checkpoint, data, experiments, plots, trust
from .evaluation import confusion_matrix
from .models import Classifier, ModelConfig, batched_log_probs
from .predict import Predictor
from .training import History, Settings, TrainConfig, WorksheetConfig, resolve_settings, validate
from .training import fit as _train

log = logging.getLogger(__name__)

_MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"name"}
_TRAIN_KEYS = {f.name for f in fields(TrainConfig)} | {f.name for f in fields(WorksheetConfig)}


# ------------------------------------------------------------------------------------------------ data

def load_names(path: str | os.PathLike | None = None) -> list[data.Pair]:
    """Distinct (folded name, language) pairs from ``path`` (a folder of ``<Language>.txt`` files, or a
    CSV/TSV of name and language); without ``path``, from ``NAMEORIGIN_DATA``, else the tutorial's archive
    (downloaded once into the cache). Names are folded into the alphabet as they are read."""
    return data.dedupe(data.read_labelled(data.resolve_data(path)))


def split_names(pairs: Sequence[data.Pair], fractions: Sequence[float] = (0.8, 0.1, 0.1), *,
                seed: int = 0) -> data.Split:
    """The leak-free split (by distinct name, stratified by language) into ``train``, ``valid`` and ``test``:
    a name never stands on two sides. ``fractions`` are (train, valid, test), summing to 1."""
    fractions = tuple(float(f) for f in fractions)
    if (len(fractions) != 3 or not all(math.isfinite(f) and f >= 0 for f in fractions)
            or abs(sum(fractions) - 1) > 1e-6 or fractions[0] <= 0):
        raise ValueError(f"fractions {fractions!r}: expected three (train, valid, test) fractions from 0 to 1 "
                         "summing to 1, with a training part above 0, e.g. (0.8, 0.1, 0.1)")
    return data.split(pairs, fractions, seed=seed)


# ------------------------------------------------------------------------------------------------ training

@dataclass
class Trained:
    """A trained model with everything that came with it: its history, languages, settings, the split it
    was trained on, a :class:`~nameorigin.predict.Predictor` over it, and the checkpoint metadata."""

    model: Classifier
    history: History
    labels: list[str]
    settings: Settings
    predictor: Predictor
    split: data.Split
    meta: dict = field(default_factory=dict)
    trust: trust.Trust | None = None  # temperature, conformal sets, out-of-scope detector, fitted on validation

    @property
    def name(self) -> str:
        return self.settings.model.name

    def log_probs(self, pairs: Sequence[data.Pair], *, noise: int = 0, seed: int = 0) -> tuple[data.Encoded, torch.Tensor]:
        """The encoded ``pairs`` (with the worksheet's noise appended when ``noise`` > 0, seeded) and the model's
        log-probabilities for them (N, C), without temperature."""
        encoded = experiments.noisy_copy(data.encode_pairs(pairs, self.labels), noise, seed)
        return encoded, batched_log_probs(self.model, encoded.tokens, encoded.lengths)[0]

    def evaluate(self, pairs: Sequence[data.Pair], *, noise: int = 0, seed: int = 0) -> dict:
        """``{"accuracy", "macro_f1", "loss", "per_language": {language: {precision, recall, f1, support}},
        "n"}`` on ``pairs`` (e.g. ``trained.split.test``); with ``noise``, on the names with that much of the
        worksheet's punctuation appended."""
        if not pairs:
            raise ValueError("no names to evaluate on")
        encoded = experiments.noisy_copy(data.encode_pairs(pairs, self.labels), noise, seed)
        return validate(self.model, encoded, self.labels)

    def confusion(self, pairs: Sequence[data.Pair]) -> torch.Tensor:
        """Counts ``[true language, predicted language]`` (C, C) on ``pairs``."""
        encoded, lp = self.log_probs(pairs)
        return confusion_matrix(encoded.labels, lp.argmax(1), len(self.labels))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint (atomically), with the metadata ``nameorigin train`` writes: it loads with
        ``Predictor.load(path)`` and every command that takes ``--model``."""
        return checkpoint.save(path, self.model, self.labels, self.meta, trust=self.trust)


def _split_of(pairs_or_split: Sequence[data.Pair] | data.Split, fractions: Sequence[float],
              seed: int) -> data.Split:
    if isinstance(pairs_or_split, data.Split):
        return pairs_or_split
    return split_names(data.dedupe(pairs_or_split), fractions, seed=seed)


def teacher_summary(settings: Settings, path: str | None = None) -> dict | None:
    """What the checkpoint records of a teacher: a teacher file (``--teacher``), the recipe trained out of fold
    (``settings.teacher``), or None."""
    if settings.teacher is None and not path:
        return None
    return {"file": path, "model": settings.teacher.model.to_dict() if settings.teacher else None,
            "out_of_fold": settings.teacher is not None}


def checkpoint_meta(settings: Settings, history: History, parts: data.Split, train_pairs: Sequence[data.Pair], *,
                    preset: str | None, fractions: Sequence[float], split_seed: int, layer: trust.Trust,
                    test_metrics: dict | None, **training: object) -> dict:
    """The metadata document of a trained model's checkpoint, as ``nameorigin train`` and :func:`fit` write
    it (training settings and any extra ``training`` keys, data fingerprint, temperature and calibration,
    validation and test metrics, history); the trust ``layer`` itself is stored by ``checkpoint.save``."""
    calibration = ({"temperature": layer.temperature, "valid_ece_before": layer.info["valid_ece_before"],
                    "valid_ece_after": layer.info["valid_ece_after"]} if parts.valid else None)
    return {
        "training": {"mode": "worksheet" if settings.worksheet else "batched", "preset": preset,
                     **asdict(settings.train), "split": list(fractions), "split_seed": split_seed,
                     "prune": settings.prune, "threads": torch.get_num_threads(),  # the arithmetic's, for reruns
                     **training, "n_train": len(train_pairs), "n_valid": len(parts.valid),
                     "n_test": len(parts.test)},
        "data_fingerprint": data.fingerprint(train_pairs),
        "temperature": layer.temperature,
        "calibration": calibration,
        "metrics": {"valid": history.best or None, "test": test_metrics},
        "history": {"loss_steps": history.loss_steps, "losses": [round(x, 5) for x in history.losses],
                    "epochs": history.epochs, "best_epoch": history.best_epoch,
                    "train_seconds": history.train_seconds, "names_seen": history.names_seen},
    }


def fit(pairs_or_split: Sequence[data.Pair] | data.Split, *, preset: str | None = None,
        worksheet: bool | None = None, model: str | None = None, split: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0, device: str | torch.device = "cpu", progress: bool = False,
        printer: Callable[[str], None] | None = None, **overrides) -> Trained:
    """Train a model as ``nameorigin train`` does and return it as :class:`Trained`.

    ``pairs_or_split``: a :class:`~nameorigin.data.Split` (from :func:`split_names`), or (name, language) pairs,
    split here by ``split`` fractions and ``split_seed``. Settings come from the dataclass defaults, then
    ``preset`` (see ``nameorigin presets``; none: ``default``, or the worksheet loop's defaults with
    ``worksheet=True``), then ``model`` (a registry name) and ``overrides``: any field of
    :class:`~nameorigin.models.ModelConfig` (``hidden``, ``layers``, ``embed``, ``dropout``, ``members``...),
    :class:`~nameorigin.training.TrainConfig` (``epochs``, ``lr``, ``noise``, ``seed``...) or
    :class:`~nameorigin.training.WorksheetConfig` (``iters``, ``print_every``, ``plot_every``...), and
    ``prune`` (names kept a language). ``printer`` gets the worksheet loop's lines (e.g. ``print``);
    ``progress`` shows the batched trainer's bar.

    With validation names, the best epoch is kept and the trust layer (temperature, conformal sets, the
    out-of-scope detector, abstention thresholds) is fitted on them for the predictor and the checkpoint.
    """
    unknown = sorted(set(overrides) - _MODEL_KEYS - _TRAIN_KEYS - {"prune"})
    if unknown:
        raise TypeError(f"fit() got unknown setting(s) {', '.join(unknown)}; model settings: "
                        f"{', '.join(sorted(_MODEL_KEYS))}; training settings: {', '.join(sorted(_TRAIN_KEYS))}; "
                        "and prune")
    parts = _split_of(pairs_or_split, split, split_seed)
    all_pairs = parts.train + parts.valid + parts.test
    labels = data.require_languages(all_pairs, "the names given to fit()")
    if not parts.train:
        raise ValueError("the split leaves no training names")
    model_values = {k: v for k, v in overrides.items() if k in _MODEL_KEYS} | ({"name": model} if model else {})
    settings = resolve_settings(preset, worksheet=worksheet, model=model_values,
                                train={k: v for k, v in overrides.items() if k in _TRAIN_KEYS},
                                prune=overrides.get("prune"))
    if settings.worksheet and settings.model.members > 1:
        raise ValueError("members: an ensemble trains with the batched trainer, not the worksheet loop")
    valid = data.encode_pairs(parts.valid, labels) if parts.valid else None
    net, history, used = _train(settings, parts.train, valid, labels, device=device, printer=printer,
                                progress=progress)
    if settings.worksheet and valid is not None:
        history.best = {k: v for k, v in validate(net, valid, labels).items() if k != "per_language"}
    test_metrics = validate(net, data.encode_pairs(parts.test, labels), labels) if parts.test else None
    fractions = split if not isinstance(pairs_or_split, data.Split) else _fractions_of(parts)
    layer = trust.calibrate(net, labels, used, parts.valid)  # on the validation names only
    meta = checkpoint_meta(settings, history, parts, used, preset=preset, fractions=fractions,
                           split_seed=split_seed, layer=layer, test_metrics=test_metrics,
                           teacher=teacher_summary(settings), processes=1)
    doc, tensors = layer.to_meta()
    predictor = Predictor(checkpoint.Checkpoint(model=net, labels=labels, meta={**meta, "trust": doc},
                                                tensors=tensors))
    return Trained(model=net, history=history, labels=labels, settings=settings, predictor=predictor,
                   split=parts, meta=meta, trust=layer)


def _fractions_of(parts: data.Split) -> list[float]:
    total = len(parts.train) + len(parts.valid) + len(parts.test)
    return [round(len(p) / total, 4) for p in (parts.train, parts.valid, parts.test)]


# ------------------------------------------------------------------------------------------------ compare

def compare(pairs: Sequence[data.Pair], models: Sequence[str] = ("rnn", "gru", "gru-attention"), *,
            noise: Sequence[int] = (0, 5), seeds: int = 1, epochs: int = 10, iters: int = 80000,
            worksheet: bool = False, hidden: int | None = None, prune: int = 50, plot_every: int = 1000,
            split_seed: int = 0, out: str | os.PathLike | None = None,
            report: Callable[[str], None] | None = None):
    """The worksheet's comparison: every model (registry names, and ``"baseline"`` for the character n-gram
    logistic regression, which needs scikit-learn) at every noise level and seed, trained on the training part
    of the leak-free split of ``pairs`` (the same split as ``split_names(pairs, seed=split_seed)``), measured
    on its test part, clean and with the same noise.

    ``worksheet``: the seeds' loop (``iters`` steps, ``prune`` names a language, hidden 32 unless ``hidden``)
    instead of the batched trainer (``epochs``). ``report`` gets one line a run (e.g. ``print``). With ``out``,
    the folder ``nameorigin compare`` writes is written too (tables, loss curves, report.md).

    Returns a pandas DataFrame when pandas is installed (else a list of dicts): one row a run, with the
    columns of ``results.csv`` and the loss curve (``curve_x``: training names seen, ``curve_loss``).
    """
    config = experiments.CompareConfig(models=list(models), noise=list(noise), seeds=seeds, worksheet=worksheet,
                                       epochs=epochs, iters=iters, hidden=hidden, prune=prune,
                                       plot_every=plot_every, split_seed=split_seed)
    report = report or log.info
    pairs = data.dedupe(pairs)
    data.require_languages(pairs, "the names given to compare()")
    if out is not None:
        results = experiments.compare(pairs, config, out, report=report)
    else:
        results = experiments.run_grid(pairs, config, report=report)
    rows = [{**{c: r.row().get(c) for c in experiments.COLUMNS}, "curve_x": r.curve_x, "curve_loss": r.curve_loss}
            for r in results]
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ plots

Curve = tuple[Sequence[float], Sequence[float]]


def _curve(run: Trained | History | Curve) -> Curve:
    """(training names seen, loss) for a trained model; (steps, loss) for a bare history; a pair as it is."""
    if isinstance(run, Trained):
        per_step = 1 if run.settings.worksheet else run.settings.train.batch_size
        return [s * per_step for s in run.history.loss_steps], run.history.losses
    if isinstance(run, History):
        return run.loss_steps, run.losses
    return run


def plot_losses(runs: Mapping[str, Trained | History | Curve], *, title: str = "Training loss",
                xlabel: str | None = None) -> Figure:
    """Several runs' training loss on one figure, ``{label: run}``; a run is a :class:`Trained` (x: training
    names seen), a :class:`~nameorigin.training.History` (x: steps) or an ``(x, loss)`` pair."""
    if xlabel is None:
        xlabel = "Steps" if any(isinstance(r, History) for r in runs.values()) else "Training names seen"
    return plots.loss_curves({label: [_curve(run)] for label, run in runs.items()}, title=title, xlabel=xlabel)


def _predictor(model: Trained | Predictor) -> Predictor:
    return model.predictor if isinstance(model, Trained) else model


def plot_attention(model: Trained | Predictor, names: Sequence[str], *, title: str | None = None) -> Figure:
    """A heat map of where an attention model looks in each name (rows: names as folded, with the predicted
    language). A model without attention raises ``ValueError``."""
    predictor = _predictor(model)
    if not predictor.has_attention:
        raise ValueError(f"a {predictor.model.config.name} model has no attention; train gru-attention")
    good = [r for r in predictor.predict(list(names), top=1, attention=True) if not r.error]
    if not good:
        raise ValueError("none of the names can be read")
    rows = [f"{r.folded} ({r.predictions[0]['language']})" for r in good]
    fig = plots.attention_map([r.folded for r in good], [r.attention for r in good],
                              title=title or f"Attention of {predictor.model.config.name}")
    fig.axes[0].set_yticks(range(len(rows)), rows)
    return fig


def plot_confusion(trained: Trained, pairs: Sequence[data.Pair], *, title: str | None = None) -> Figure:
    """The row-normalised confusion matrix of ``trained`` on ``pairs`` (rows: true language)."""
    return plots.confusion(trained.confusion(pairs).numpy(), trained.labels,
                           title=title or f"{trained.name} on {len(pairs)} names (rows: true language)")
