"""The use cases as library functions: load and split names, train, evaluate, compare and plot.

>>> import nameorigin
>>> pairs = nameorigin.load_names()                        # NAMEORIGIN_DATA, or the tutorial's archive
>>> parts = nameorigin.split_names(pairs)                  # leak-free 80/10/10 by distinct name
>>> gru = nameorigin.fit(parts, model="gru", epochs=5)     # the batched trainer
>>> rnn = nameorigin.fit(parts, preset="worksheet-rnn", iters=5000)   # the worksheet's loop
>>> gru.evaluate(parts.test)["macro_f1"], gru.predictor.predict(["Hinton"])[0].predictions[0]
>>> nameorigin.evaluate(gru, parts.test).report["macro_f1"]           # what ``nameorigin evaluate`` prints
>>> nameorigin.plot_losses({"gru": gru, "rnn": rnn})
>>> gru.save("gru.safetensors")                            # the same file ``nameorigin train`` writes

This is the one place orchestration lives: ``nameorigin train`` and :func:`fit` are both :func:`train`,
``nameorigin evaluate`` is :func:`evaluate`, ``nameorigin compare`` is :func:`compare`; the command line only
parses, formats and maps parameter names to its flags. Bad input raises an
:class:`~nameorigin.errors.InputError` whose ``param`` names the parameter. Nothing is trained or written
that a caller did not ask for, and matplotlib is imported only by the plotting helpers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import checkpoint, data, distributed, text, trust
from .errors import InputError, check_whole
from .evaluation import (
    auroc,
    best_thresholds,
    confusion_matrix,
    expected_calibration_error,
    metrics,
    reliability,
    risk_coverage,
    set_coverage,
)
from .models import Classifier, ModelConfig, batched_log_probs
from .predict import Predictor
from .training import History, Settings, TrainConfig, WorksheetConfig, recipe, resolve_settings, validate
from .training import fit as _train

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"name"}
_TRAIN_KEYS = {f.name for f in fields(TrainConfig)} | {f.name for f in fields(WorksheetConfig)}

Source = Sequence[data.Pair] | data.Split | str | os.PathLike | None


# ------------------------------------------------------------------------------------------------ data


def load_names(path: str | os.PathLike | None = None) -> list[data.Pair]:
    """Distinct (folded name, language) pairs from ``path`` (a folder of ``<Language>.txt`` files, or a
    CSV/TSV of name and language); without ``path``, from ``NAMEORIGIN_DATA``, else the tutorial's archive
    (downloaded once into the cache). Names are folded into the alphabet as they are read."""
    return data.dedupe(data.read_labelled(data.resolve_data(path)))


def split_names(
    pairs: Sequence[data.Pair], fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> data.Split:
    """The leak-free split (by distinct name, stratified by language) into ``train``, ``valid`` and ``test``:
    a name never stands on two sides. ``fractions`` are (train, valid, test), summing to 1."""
    return data.split(pairs, data.check_fractions(fractions, param="fractions"), seed=seed)


def _source_name(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if source is None:
        return os.environ.get("NAMEORIGIN_DATA") or "the data"
    return "the names given"


def training_names(source: Source) -> list[data.Pair]:
    """Distinct pairs to train or split on, from a path (None: ``NAMEORIGIN_DATA``, else the archive) or from
    pairs; refused (:class:`~nameorigin.data.DataError` naming the source) unless they hold two languages or
    more."""
    return _pairs_of(source, to_train=True)


def _pairs_of(source: Source, *, to_train: bool) -> list[data.Pair]:
    """Distinct pairs from a path (None: ``NAMEORIGIN_DATA``, else the archive) or from pairs; with
    ``to_train``, refused unless they hold two languages or more. A Split gives all its parts."""
    if isinstance(source, data.Split):
        source = source.train + source.valid + source.test
    pairs = load_names(source) if source is None or isinstance(source, (str, os.PathLike)) else data.dedupe(source)
    if to_train:
        data.require_languages(pairs, _source_name(source))
    return pairs


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
    train_pairs: list[data.Pair] = field(default_factory=list)  # the names it trained on (after any prune)

    @property
    def name(self) -> str:
        return self.settings.model.name

    @property
    def test_metrics(self) -> dict | None:
        """Accuracy, macro-F1, loss and per-language figures on the held-out test names (None without them)."""
        return (self.meta.get("metrics") or {}).get("test")

    def log_probs(
        self, pairs: Sequence[data.Pair], *, noise: int = 0, seed: int = 0
    ) -> tuple[data.Encoded, torch.Tensor]:
        """The encoded ``pairs`` (with the worksheet's noise appended when ``noise`` > 0, seeded) and the model's
        log-probabilities for them (N, C), without temperature."""
        encoded = data.noisy_copy(data.encode_pairs(pairs, self.labels), noise, seed)
        return encoded, batched_log_probs(self.model, encoded.tokens, encoded.lengths)[0]

    def evaluate(self, pairs: Sequence[data.Pair], *, noise: int = 0, seed: int = 0) -> dict:
        """``{"accuracy", "macro_f1", "loss", "per_language": {language: {precision, recall, f1, support}},
        "n"}`` on ``pairs`` (e.g. ``trained.split.test``); with ``noise``, on the names with that much of the
        worksheet's punctuation appended. (The whole report of ``nameorigin evaluate``: :func:`evaluate`.)"""
        if not pairs:
            raise InputError("pairs: no names to evaluate on", param="pairs")
        encoded = data.noisy_copy(data.encode_pairs(pairs, self.labels), noise, seed)
        return validate(self.model, encoded, self.labels)

    def confusion(self, pairs: Sequence[data.Pair]) -> torch.Tensor:
        """Counts ``[true language, predicted language]`` (C, C) on ``pairs``."""
        encoded, lp = self.log_probs(pairs)
        return confusion_matrix(encoded.labels, lp.argmax(1), len(self.labels))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint (atomically), with the metadata ``nameorigin train`` writes: it loads with
        ``Predictor.load(path)`` and every command that takes ``--model``."""
        return checkpoint.save(path, self.model, self.labels, self.meta, trust=self.trust)


def teacher_summary(settings: Settings, path: str | None = None) -> dict | None:
    """What the checkpoint records of a teacher: a teacher file (``teacher``), the recipe trained out of fold
    (``settings.teacher``), or None."""
    recipe_ = settings.teacher or next((m.teacher for m in settings.members if m.teacher is not None), None)
    if recipe_ is None and not path:
        return None
    return {
        "file": path,
        "model": recipe_.model.to_dict() if recipe_ else None,
        "out_of_fold": recipe_ is not None,
    }


def checkpoint_meta(
    settings: Settings,
    history: History,
    parts: data.Split,
    train_pairs: Sequence[data.Pair],
    *,
    preset: str | None,
    fractions: Sequence[float],
    split_seed: int,
    layer: trust.Trust,
    test_metrics: dict | None,
    **training: object,
) -> dict:
    """The metadata document of a trained model's checkpoint, as :func:`train` writes it (training settings
    and any extra ``training`` keys, data fingerprint, temperature and calibration, validation and test
    metrics, history); the trust ``layer`` itself is stored by ``checkpoint.save``."""
    calibration = (
        {
            "temperature": layer.temperature,
            "valid_ece_before": layer.info["valid_ece_before"],
            "valid_ece_after": layer.info["valid_ece_after"],
        }
        if parts.valid
        else None
    )
    return {
        "training": {
            "mode": "worksheet" if settings.worksheet else "batched",
            "preset": preset,
            **asdict(settings.train),
            "split": list(fractions),
            "split_seed": split_seed,
            "prune": settings.prune,
            "threads": torch.get_num_threads(),  # the arithmetic's, for reruns
            **training,
            "n_train": len(train_pairs),
            "n_valid": len(parts.valid),
            "n_test": len(parts.test),
        },
        "name_kind": getattr(settings.train, "name_kind", "surname"),  # surname | first: the part it reads
        "data_fingerprint": data.fingerprint(train_pairs),
        "folding": text.folding_info(text.DEFAULT_FOLD_SCHEME),  # how its names were folded, with versions
        "temperature": layer.temperature,
        "calibration": calibration,
        "metrics": {"valid": history.best or None, "test": test_metrics},
        "history": {
            "loss_steps": history.loss_steps,
            "losses": [round(x, 5) for x in history.losses],
            "epochs": history.epochs,
            "best_epoch": history.best_epoch,
            "train_seconds": history.train_seconds,
            "names_seen": history.names_seen,
        },
    }


def train_settings(
    *, preset: str | None = None, worksheet: bool | None = None, model: str | None = None, **overrides
) -> Settings:
    """The settings :func:`train` trains with: the dataclass defaults, then ``preset``, then ``model`` (a
    registry name) and ``overrides`` (fields of :class:`~nameorigin.models.ModelConfig`,
    :class:`~nameorigin.training.TrainConfig` or :class:`~nameorigin.training.WorksheetConfig`, and
    ``prune``). Unknown names raise ``TypeError``; settings that cannot go together an :class:`InputError`."""
    unknown = sorted(set(overrides) - _MODEL_KEYS - _TRAIN_KEYS - {"prune"})
    if unknown:
        raise TypeError(
            f"train() got unknown setting(s) {', '.join(unknown)}; model settings: "
            f"{', '.join(sorted(_MODEL_KEYS))}; training settings: {', '.join(sorted(_TRAIN_KEYS))}; "
            "and prune"
        )
    if overrides.get("name_kind", "surname") not in ("surname", "first"):
        raise InputError(f"name_kind {overrides['name_kind']!r}: expected surname or first", param="name_kind")
    model_values = {k: v for k, v in overrides.items() if k in _MODEL_KEYS} | ({"name": model} if model else {})
    settings = resolve_settings(
        preset,
        worksheet=worksheet,
        model=model_values,
        train={k: v for k, v in overrides.items() if k in _TRAIN_KEYS},
        prune=overrides.get("prune"),
    )
    if settings.worksheet and settings.model.members > 1:
        raise InputError(
            "members: an ensemble trains with the batched trainer, not the worksheet loop", param="members"
        )
    if settings.worksheet and settings.model.compact:
        raise InputError(
            "compact: a float16 model trains with the batched trainer, not the worksheet loop", param="compact"
        )
    return settings


def _training_split(source: Source, fractions: Sequence[float], seed: int) -> tuple[data.Split, list[float]]:
    """The split to train on and the fractions it records: a given :class:`~nameorigin.data.Split` as it is,
    else the leak-free split of the source's distinct pairs."""
    if isinstance(source, data.Split):
        parts = source
        data.require_languages(parts.train + parts.valid + parts.test, _source_name(source))
        return parts, _fractions_of(parts)
    fractions = data.check_fractions(fractions)
    return data.split(training_names(source), fractions, seed=seed), list(fractions)


def _teacher_targets(
    path: str | os.PathLike, settings: Settings, train_pairs: Sequence[data.Pair], labels: list[str], device
) -> torch.Tensor | None:
    """A teacher checkpoint: with ``teacher_folds`` K >= 2 its recipe, set as ``settings.teacher`` to train out
    of fold; otherwise its own log-probabilities on the training names (the soft targets)."""
    if settings.worksheet:
        raise InputError(
            "teacher: distillation trains with the batched trainer, not the worksheet loop", param="teacher"
        )
    doc = checkpoint.read_meta(path)
    if doc["labels"] != labels:
        raise InputError(
            f"teacher {path}: made for the languages {', '.join(doc['labels'])}, not this data's", param="teacher"
        )
    if settings.train.teacher_folds >= 2:
        settings.teacher = recipe(doc)
        return None
    if settings.train.teacher_folds == 1:
        raise InputError(
            "teacher_folds 1: expected 0 (the teacher's own probabilities) or 2 or more", param="teacher_folds"
        )
    teacher = checkpoint.load(path, device=device).model
    encoded = data.encode_pairs(train_pairs, labels)
    return batched_log_probs(teacher, encoded.tokens, encoded.lengths)[0]


def train(
    source: Source = None,
    *,
    preset: str | None = None,
    worksheet: bool | None = None,
    model: str | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    teacher: str | os.PathLike | None = None,
    corpus: str | os.PathLike | None = None,
    exclude: Sequence[str | os.PathLike] = (),
    device: str | torch.device = "cpu",
    progress: bool = False,
    printer: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    **overrides,
) -> Trained | None:
    """Train, calibrate and evaluate a model: what ``nameorigin train`` does (it writes ``.save(out)``).

    ``source``: a :class:`~nameorigin.data.Split`; or (name, language) pairs, or a path as :func:`load_names`
    reads it (None: ``NAMEORIGIN_DATA``, else the tutorial's archive), split here by the ``split`` fractions and
    ``split_seed``. Settings: see :func:`train_settings`. ``teacher``: a checkpoint that teaches by
    distillation (its probabilities, or with ``teacher_folds`` >= 2 its recipe out of fold). ``printer`` gets
    the worksheet loop's lines (e.g. ``print``); ``progress`` shows the batched trainer's bar; ``on_epoch`` gets
    each epoch's row. Under ``torchrun`` each process trains its share; rank 0 gets the result, the others None.

    With validation names, the best epoch is kept and the trust layer (temperature, conformal sets, the
    out-of-scope detector, abstention thresholds) is fitted on them; the test names give the held-out figures.
    """
    # The steps, each a seam of its own. A further training source (a weakly labelled corpus, full names) joins
    # the data step and reaches the trainer through the training step, as the teacher's soft targets do.
    settings = train_settings(preset=preset, worksheet=worksheet, model=model, **overrides)
    if settings.worksheet and distributed.launched():
        raise InputError(
            "worksheet: the worksheet loop trains one name at a time in one process; several "
            "processes train with the batched trainer",
            param="worksheet",
        )
    if overrides.get("name_kind") == "first" and settings.worksheet:  # WorksheetConfig has no name_kind
        raise InputError("name_kind first: a first-name model trains with the batched trainer", param="name_kind")
    first = getattr(settings.train, "name_kind", "surname") == "first"
    if first and (corpus is not None or source is None):  # a first-name model: its corpus is its only source
        parts, fractions, real = _first_name_step(corpus, exclude)
        labels = data.languages(parts.train + parts.valid + parts.test)
    else:
        parts, fractions = _training_split(source, split, split_seed)  # data: read, de-duplicate, split
        labels = data.languages(parts.train + parts.valid + parts.test)
        if not parts.train:
            raise data.DataError(f"{_source_name(source)}: the split leaves no training names")
        parts, real = _corpus_step(settings, parts, labels, corpus, exclude)  # a second source, leak-guarded
    done = _train_step(
        settings,
        parts,
        labels,
        teacher=teacher,
        device=device,
        printer=printer,
        progress=progress,
        on_epoch=on_epoch,
        corpus=real.part if real else None,
    )
    if done is None:  # another rank of a distributed run
        return None
    net, history, used, processes = done
    test_metrics = validate(net, data.encode_pairs(parts.test, labels), labels) if parts.test else None
    layer = trust.calibrate(
        net,
        labels,
        used,
        parts.valid,  # trust: on the validation names only
        out_of_scope=real.out_of_scope if real else (),
        real_train=real.part.top_pairs(labels) if real else (),
        real_valid=real.part.valid if real else (),
    )
    meta = checkpoint_meta(
        settings,
        history,
        parts,
        used,
        preset=preset,
        fractions=fractions,
        split_seed=split_seed,
        layer=layer,
        test_metrics=test_metrics,
        teacher=teacher_summary(settings, None if teacher is None else str(teacher)),
        processes=processes,
        corpus=real.info if real else None,
    )
    if real:  # names are folded as the corpus folded them (its readers); the fingerprint covers the corpus
        meta["folding"] = text.folding_info(real.info["fold_scheme"])
    if real:  # the fingerprint covers the corpus file's content, its map and its source's version
        meta["data_fingerprint"] = data.fingerprint_with(
            meta["data_fingerprint"], {k: real.info[k] for k in ("sha256", "map_sha256", "names_dataset")}
        )
    doc, tensors = layer.to_meta()
    predictor = Predictor(checkpoint.Checkpoint(model=net, labels=labels, meta={**meta, "trust": doc}, tensors=tensors))
    return Trained(
        model=net,
        history=history,
        labels=labels,
        settings=settings,
        predictor=predictor,
        split=parts,
        meta=meta,
        trust=layer,
        train_pairs=used,
    )


def _first_name_step(path: str | os.PathLike | None, exclude: Sequence[str | os.PathLike]):
    """The data step of a first-name model (``name_kind="first"``): no labelled data, the corpus of first names
    (see :func:`~nameorigin.corpus.first_name_sources`). Returns the split, its fractions and the corpus ready
    for training."""
    from . import corpus as corpus_module

    if path is None:
        raise InputError(
            "name_kind first: a first-name model trains on a first-name corpus (`nameorigin corpus --kind first`) "
            "or on labelled first names; give the corpus (--corpus FILE.parquet) or the names (--data)",
            param="corpus",
        )
    excluded = corpus_module.read_exclude(exclude) if exclude else set()
    parts, real = corpus_module.first_name_sources(path, exclude=excluded)
    if not parts.train or not parts.valid:
        raise data.DataError(
            f"corpus {path}: too few first names to train on (training {len(parts.train)}, validation "
            f"{len(parts.valid)} scored names)"
        )
    return parts, _fractions_of(parts), real


def _corpus_step(
    settings: Settings,
    parts: data.Split,
    labels: list[str],
    path: str | os.PathLike | None,
    exclude: Sequence[str | os.PathLike],
):
    """The corpus step of :func:`train`: ``exclude`` files' names leave the training names; with a corpus file,
    the leak guard between both sources (see :func:`~nameorigin.corpus.for_training`). Returns the split to
    train on and the corpus ready for training (None without one)."""
    if path is None and not exclude:
        return parts, None
    from . import corpus as corpus_module

    if path is not None and settings.worksheet:
        raise InputError(
            "corpus: the worksheet loop trains on labelled names only; a corpus trains with the batched trainer",
            param="corpus",
        )
    excluded = corpus_module.read_exclude(exclude) if exclude else set()
    if path is None:
        train = [p for p in parts.train if p[0].lower() not in excluded]
        log.info("exclude: %d labelled training name(s) removed", len(parts.train) - len(train))
        return data.Split(train, parts.valid, parts.test), None
    real = corpus_module.for_training(
        path, parts.train, labels, labelled_held=[n for n, _ in parts.valid + parts.test], exclude=excluded
    )
    if not real.train:
        raise data.DataError(f"corpus {path}: the leak guard leaves no labelled training names")
    return data.Split(real.train, parts.valid, parts.test), real


def _train_step(
    settings: Settings,
    parts: data.Split,
    labels: list[str],
    *,
    teacher,
    device,
    printer,
    progress,
    on_epoch,
    corpus=None,
) -> tuple[Classifier, History, list[data.Pair], int] | None:
    """The training step of :func:`train`: the distributed start (under ``torchrun``), the teacher's soft
    targets, the trainer, the distributed finish (without waiting, after an error: another rank may be gone).
    Returns the model, its history (with the validation figures of its best epoch), the names it trained on and
    the number of processes; None on every rank but 0."""
    device = torch.device(device)
    ranks = distributed.Ranks()
    if distributed.launched():
        ranks, device = distributed.start(device)
    valid = data.encode_pairs(parts.valid, labels) if parts.valid else None
    try:
        soft_targets = _teacher_targets(teacher, settings, parts.train, labels, device) if teacher is not None else None
        net, history, used = _train(
            settings,
            parts.train,
            valid,
            labels,
            device=device,
            printer=printer if ranks.is_main else None,
            progress=progress and ranks.is_main,
            on_epoch=on_epoch if ranks.is_main else None,
            soft_targets=soft_targets,
            corpus=corpus,
        )
    except BaseException:
        distributed.finish(wait=False)
        raise
    distributed.finish()
    if not ranks.is_main:  # rank 0 calibrates, tests and keeps the model
        return None
    if settings.worksheet and valid is not None:
        history.best = {k: v for k, v in validate(net, valid, labels).items() if k != "per_language"}
    return net, history, used, ranks.world


def fit(
    pairs_or_split: Sequence[data.Pair] | data.Split,
    *,
    preset: str | None = None,
    worksheet: bool | None = None,
    model: str | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    printer: Callable[[str], None] | None = None,
    threads: int | None = None,
    **overrides,
) -> Trained:
    """:func:`train` on names in hand: ``pairs_or_split``, a :class:`~nameorigin.data.Split` (from
    :func:`split_names`) or (name, language) pairs, split here by ``split`` fractions and ``split_seed``.
    Settings come from the dataclass defaults, then ``preset`` (see ``nameorigin presets``; none: ``default``,
    or the worksheet loop's defaults with ``worksheet=True``), then ``model`` (a registry name) and
    ``overrides``: any field of :class:`~nameorigin.models.ModelConfig` (``hidden``, ``layers``, ``embed``,
    ``dropout``, ``members``...), :class:`~nameorigin.training.TrainConfig` (``epochs``, ``lr``, ``noise``,
    ``seed``, ``distill_weight``...) or :class:`~nameorigin.training.WorksheetConfig` (``iters``,
    ``print_every``, ``plot_every``...), and ``prune`` (names kept a language); ``teacher=PATH`` distils.
    ``printer`` gets the worksheet loop's lines (e.g. ``print``); ``progress`` shows the batched trainer's bar.
    ``threads``: torch's threads for this process, as ``--threads`` (``torch.set_num_threads``; None leaves them).
    """
    for name, value in (("epochs", overrides.get("epochs")), ("iters", overrides.get("iters")), ("threads", threads)):
        if value is not None:
            check_whole(value, name)
    if threads is not None:
        torch.set_num_threads(threads)
    if isinstance(pairs_or_split, (str, os.PathLike)) or pairs_or_split is None:
        raise InputError(
            "pairs_or_split: expected (name, language) pairs or a Split; to read a file, "
            "nameorigin.train(path) or fit(load_names(path))",
            param="pairs_or_split",
        )
    return train(
        pairs_or_split,
        preset=preset,
        worksheet=worksheet,
        model=model,
        split=split,
        split_seed=split_seed,
        device=device,
        progress=progress,
        printer=printer,
        **overrides,
    )


def _fractions_of(parts: data.Split) -> list[float]:
    total = len(parts.train) + len(parts.valid) + len(parts.test)
    return [round(len(p) / total, 4) for p in (parts.train, parts.valid, parts.test)]


# ------------------------------------------------------------------------------------------------ evaluate


@dataclass
class Evaluation:
    """What ``nameorigin evaluate`` reports, and the arrays its plots are drawn from."""

    report: dict  # accuracy, macro-F1, per-language figures, calibration, sets, abstention, out-of-scope
    labels: list[str]
    truth: torch.Tensor  # (N,) true language indices
    log_probs: torch.Tensor  # (N, C) the model's, before temperature
    applied: trust.TrustResult  # the trust layer with the checkpoint's defaults: probabilities, out-of-scope...

    @property
    def predicted(self) -> torch.Tensor:
        """The answers the report scores: the top language under the prior asked for (or the default mix)."""
        return torch.from_numpy(self.applied.probabilities).argmax(1)

    def confusion(self) -> torch.Tensor:
        """Counts ``[true language, predicted language]`` (C, C)."""
        return confusion_matrix(self.truth, self.predicted, len(self.labels))

    def reliability(self) -> tuple[list[dict], list[dict]]:
        """Reliability bins before and after temperature scaling."""
        return (
            reliability(self.log_probs.softmax(1), self.truth),
            reliability(torch.from_numpy(self.applied.probabilities), self.truth),
        )

    def risk_coverage(self) -> dict[str, tuple[list[float], list[float]]]:
        """Risk-coverage curves by the calibrated top probability and, with a detector, by it times
        (1 - out-of-scope score)."""
        correct = (self.predicted == self.truth).numpy()
        top = self.applied.probabilities.max(1)
        curves = {"top probability": risk_coverage(top, correct)}
        if self.applied.out_of_scope is not None:
            curves["top probability x (1 - out-of-scope)"] = risk_coverage(
                top * (1 - self.applied.out_of_scope), correct
            )
        return curves


def _predictor(model: Trained | Predictor | str | os.PathLike | None, **load) -> Predictor:
    """A predictor for ``model``: a :class:`Trained`'s, a Predictor as it is, or a checkpoint path (None: the
    bundled model) loaded with ``load`` (``device``, ``precision``)."""
    if isinstance(model, Trained):
        return model.predictor
    if isinstance(model, Predictor):
        return model
    return Predictor.load(model, **load)


def _name_list(names: Sequence[str] | str | os.PathLike) -> tuple[list[str], str]:
    """Raw names from a sequence, or from a file any ``predict --input`` reads, and what to call them."""
    if isinstance(names, (str, os.PathLike)):
        from . import frame

        source = frame.open_source(names)
        return (
            [name for batch in source.batches for name in batch.column(source.column).to_pylist() if name is not None],
            str(source.path),
        )
    return list(names), "the out-of-scope names"


def _out_of_scope_report(predictor: Predictor, in_scope: trust.TrustResult, names: list[str], what: str) -> dict:
    """Out-of-scope AUROC and abstention on names of other languages against the ``in_scope`` names."""
    results = predictor.predict(names, top=1, name_type="surname")
    readable = [p for p in results if not p.error]
    if not readable:
        raise InputError(f"out_of_scope {what}: no readable names", param="out_of_scope")
    scores = [p.out_of_scope for p in readable]
    top = [p.predictions[0]["probability"] for p in readable]
    in_top = in_scope.probabilities.max(1)
    return {
        "n": len(readable),
        "unreadable": len(results) - len(readable),
        "auroc": auroc(in_scope.out_of_scope, scores),
        "auroc_top_probability": auroc(1 - in_top, [1 - t for t in top]),
        "abstained": sum(p.abstained for p in readable) / len(readable),
        "abstained_in_scope": float(in_scope.abstained.mean()),
        "best_thresholds": best_thresholds(in_top, in_scope.out_of_scope, top, scores),
    }


def evaluate(
    model: Trained | Predictor | str | os.PathLike | None = None,
    names: Source = None,
    *,
    out_of_scope: Sequence[str] | str | os.PathLike | None = None,
    prior=None,
    device: str = "cpu",
    precision: str = "fp32",
    name_type: str = "surname",
) -> Evaluation | dict:
    """The whole report of ``nameorigin evaluate``: ``model`` (a :class:`Trained`, a Predictor, a checkpoint
    path, or None for the bundled model) on labelled ``names`` (pairs, or a path as :func:`load_names` reads
    it): accuracy, macro-F1 and per-language figures, the calibration before and after the temperature, the
    conformal sets' coverage at each of ``trust.COVERAGES``, the default abstention rate, and with
    ``out_of_scope`` (names of other languages, or a file of them) the out-of-scope AUROC and abstention.
    ``prior`` (as :meth:`Predictor.predict` takes it: ``"uniform"``, ``"auto"``, weights, a file): the figures
    are those of the predictions under that language mix (``"auto"``: estimated by EM on these names, and
    reported as ``prior``); default: the model's own mix.

    ``name_type`` other than ``surname`` (full or first names, or ``auto``): the report of
    :func:`evaluate_names` (a dict) instead."""
    predictor = _predictor(model, device=device, precision=precision)
    if name_type != "surname":  # names as written (the parser needs their script), not folded
        if out_of_scope is not None:
            raise InputError("out_of_scope: with surnames only (name_type surname)", param="out_of_scope")
        from .fullname import read_pairs

        pairs = read_pairs(names) if isinstance(names, (str, os.PathLike)) else list(names)
        return evaluate_names(predictor, pairs, name_type=name_type)
    pairs = _pairs_of(names, to_train=False)
    if not pairs:
        raise InputError(f"names {_source_name(names)}: no names to evaluate on", param="names")
    layer = predictor.trust
    if out_of_scope is not None and layer.oos is None:  # refused before the evaluation runs, not after
        raise InputError(
            "out_of_scope: the model has no out-of-scope detector (trained before the trust layer, "
            "or without Faker); retrain it",
            param="out_of_scope",
        )
    oos_names = _name_list(out_of_scope) if out_of_scope is not None else None
    encoded = data.encode_pairs(pairs, predictor.labels)
    lp, _ = batched_log_probs(predictor.model, encoded.tokens, encoded.lengths)
    folded = [n for n, _ in pairs]
    applied = layer.apply(lp, folded, prior=prior)  # temperature, the prior, and the checkpoint's thresholds
    calibrated = torch.from_numpy(applied.probabilities)
    predicted = calibrated.argmax(1)  # under the prior asked for, or the model's default mix
    report = metrics(encoded.labels, predicted, predictor.labels)
    if prior is not None and applied.prior is not None:
        report["prior"] = dict(zip(predictor.labels, (round(float(w), 6) for w in applied.prior), strict=True))
    report["temperature"] = layer.temperature
    report["ece_before"] = expected_calibration_error(lp.softmax(1), encoded.labels)
    report["ece_after"] = expected_calibration_error(calibrated, encoded.labels)
    if layer.conformal is not None:
        report["sets"] = {
            str(c): set_coverage(
                layer.apply(lp, folded, coverage=c, prior=prior).sets, encoded.labels.numpy(), predictor.labels
            )
            for c in trust.COVERAGES
        }
    if layer.min_confidence is not None:
        report["abstained"] = float(applied.abstained.mean())
    if oos_names is not None:
        report["out_of_scope"] = _out_of_scope_report(predictor, applied, *oos_names)
    return Evaluation(report=report, labels=list(predictor.labels), truth=encoded.labels, log_probs=lp, applied=applied)


def evaluate_names(predictor: Predictor, pairs: Sequence[data.Pair], *, name_type: str = "full") -> dict:
    """Accuracy, macro-F1 and per-language figures of the combined answers on labelled full (or first) names
    read as ``name_type``, with each part alone beside them (``parts``: the surname's and the first name's own
    top language, on the same names; a part not read counts as wrong) and ``unanswered`` (names with no
    readable part, counted wrong). Names of languages the surname model lacks are left out (``skipped``)."""
    known = [(n, lang) for n, lang in pairs if lang in predictor.labels]
    if not known:
        raise InputError("names: none of their languages is one of the model's", param="names")
    if all(isinstance(n, tuple) for n, _ in known):  # (first, last) pairs
        table = predictor.predict_columns(
            None, 1, first_names=[n[0] for n, _ in known], last_names=[n[1] for n, _ in known]
        ).to_pydict()
    else:
        table = predictor.predict_columns([n for n, _ in known], 1, name_type=name_type).to_pydict()
    index = {lang: i for i, lang in enumerate(predictor.labels)}
    truth = torch.tensor([index[lang] for _, lang in known])

    def predicted(column: str) -> torch.Tensor:  # -1: no answer (counted wrong)
        return torch.tensor([index.get(x, -1) if x is not None else -1 for x in table[column]])

    combined = predicted("language_1")
    answered = combined >= 0
    report = metrics(truth, torch.where(answered, combined, (truth + 1) % len(index)), predictor.labels)
    report["accuracy"] = float(((combined == truth) & answered).double().mean())
    report.update(
        name_type=name_type,
        unanswered=int((~answered).sum()),
        skipped=len(pairs) - len(known),
        parts={
            kind: {
                "accuracy": float((predicted(f"{part}_language_1") == truth).double().mean()),
                "read": int((predicted(f"{part}_language_1") >= 0).sum()),
            }
            for part, kind in (("family", "surname"), ("given", "first"))
        },
        combination=predictor.combination.to_dict() if predictor.first is not None else None,
        combination_note=predictor.combination_note,
    )
    return report


# ------------------------------------------------------------------------------------------------ compare


def compare(
    pairs: Source = None,
    models: Sequence[str] | None = None,
    *,
    out: str | os.PathLike | None = None,
    report: Callable[[str], None] | None = None,
    as_frame: bool = True,
    **settings,
):
    """The worksheet's comparison: every model (registry names, and ``"baseline"`` for the character n-gram
    logistic regression, ``ngram-lr``, which needs scikit-learn) at every noise level and seed, trained on the
    training part of the leak-free split of ``pairs`` (pairs, or a path as :func:`load_names` reads it; the
    same split as ``split_names(pairs, seed=split_seed)``), measured on its test part, clean and with the same
    noise.

    ``settings`` are the fields of :class:`~nameorigin.experiments.CompareConfig`, the single source of their
    defaults: ``noise``, ``seeds``, ``epochs``, ``worksheet`` (the seeds' loop: ``iters`` steps, ``prune``
    names a language, hidden 32 unless ``hidden``), ``plot_every``, ``split_seed``. ``report`` gets one line a
    run (e.g. ``print``). With ``out``, the folder ``nameorigin compare`` writes is written too (tables, loss
    curves, report.md).

    Returns a pandas DataFrame when pandas is installed and ``as_frame`` (else a list of dicts): one row a run,
    with the columns of ``results.csv`` and the loss curve (``curve_x``: training names seen, ``curve_loss``).
    """
    from . import experiments

    if models is not None:
        settings["models"] = list(models)
    config = experiments.CompareConfig(**settings)
    experiments.check_models(config.models)
    report = report or log.info
    pairs = training_names(pairs)
    if out is not None:
        results = experiments.compare(pairs, config, out, report=report)
    else:
        results = experiments.run_grid(pairs, config, report=report)
    rows = [
        {**{c: r.row().get(c) for c in experiments.COLUMNS}, "curve_x": r.curve_x, "curve_loss": r.curve_loss}
        for r in results
    ]
    if not as_frame:
        return rows
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


def plot_losses(
    runs: Mapping[str, Trained | History | Curve], *, title: str = "Training loss", xlabel: str | None = None
) -> Figure:
    """Several runs' training loss on one figure, ``{label: run}``; a run is a :class:`Trained` (x: training
    names seen), a :class:`~nameorigin.training.History` (x: steps) or an ``(x, loss)`` pair."""
    from . import plots

    if xlabel is None:
        xlabel = "Steps" if any(isinstance(r, History) for r in runs.values()) else "Training names seen"
    return plots.loss_curves({label: [_curve(run)] for label, run in runs.items()}, title=title, xlabel=xlabel)


def plot_attention(model: Trained | Predictor, names: Sequence[str], *, title: str | None = None) -> Figure:
    """A heat map of where an attention model looks in each name (rows: names as folded, with the predicted
    language). A model without attention raises ``ValueError``."""
    from . import plots

    predictor = _predictor(model)
    if not predictor.has_attention:
        raise ValueError(f"a {predictor.model.config.name} model has no attention; train gru-attention")
    good = [r for r in predictor.predict(list(names), top=1, attention=True, name_type="surname") if not r.error]
    if not good:
        raise ValueError("none of the names can be read")
    rows = [f"{r.folded} ({r.predictions[0]['language']})" for r in good]
    fig = plots.attention_map(
        [r.folded for r in good],
        [r.attention for r in good],
        title=title or f"Attention of {predictor.model.config.name}",
    )
    fig.axes[0].set_yticks(range(len(rows)), rows)
    return fig


def plot_confusion(trained: Trained, pairs: Sequence[data.Pair], *, title: str | None = None) -> Figure:
    """The row-normalised confusion matrix of ``trained`` on ``pairs`` (rows: true language)."""
    from . import plots

    return plots.confusion(
        trained.confusion(pairs).numpy(),
        trained.labels,
        title=title or f"{trained.name} on {len(pairs)} names (rows: true language)",
    )
