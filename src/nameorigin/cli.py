"""The ``nameorigin`` command: it parses and calls the modules; it holds no logic of its own."""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import __version__, checkpoint, data, distributed, experiments, frame, plots, trust
from .api import checkpoint_meta, teacher_summary
from .atomic import OutputError, atomic_text, check_output
from .checkpoint import CheckpointError
from .evaluation import (auroc, confusion_matrix, expected_calibration_error, format_report, format_trust_report,
                         metrics, reliability, risk_coverage, set_coverage)
from .models import REGISTRY, ModelConfig, UnknownModel, batched_log_probs
from .models import PRECISIONS, PrecisionError
from .predict import Prediction, Predictor, default_model_path
from .server import ServeConfig
from .text import BadName
from .training import (PRESETS, TrainConfig, UnknownPreset, WorksheetConfig, fit, recipe, resolve_settings,
                       validate)
from .trust import TrustError

log = logging.getLogger("nameorigin")
EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    pass


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that partial files are removed on the way out."""


def _terminate(signum, frame) -> None:
    raise Terminated()


# ------------------------------------------------------------------------------------------- helpers

@contextmanager
def atomic_output(path: str | None):
    """Yield a text stream: stdout, or a file written atomically (see :mod:`nameorigin.atomic`)."""
    if not path or path == "-":
        yield sys.stdout
        return
    with atomic_text(path) as fh:
        yield fh


def _device(name: str) -> torch.device:
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available to this torch build")
        index = int(name[5:] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def _load_labelled(path: str | None, *, to_train: bool = False) -> list[data.Pair]:
    """De-duplicated labelled names; with ``to_train``, refused unless they hold two languages or more."""
    pairs = data.dedupe(data.read_labelled(data.resolve_data(path)))
    if to_train:
        data.require_languages(pairs, path or os.environ.get("NAMEORIGIN_DATA") or "the data")
    return pairs


# ------------------------------------------------------------------------------------------- flag ranges

@dataclass(frozen=True)
class Range:
    """The values a numeric flag accepts: an argparse ``type`` that parses and checks in one place."""

    kind: type  # int or float
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: ``low`` itself is refused
    high_open: bool = False

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return (f"{what} from {self.low}{' (exclusive)' if self.low_open else ''} to "
                    f"{self.high}{' (exclusive)' if self.high_open else ''}")
        if self.low is not None:
            return f"{what} {'above' if self.low_open else 'of at least'} {self.low}"
        if self.high is not None:
            return f"{what} {'below' if self.high_open else 'of at most'} {self.high}"
        return what

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {self.describe()}")
        too_low = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        too_high = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {self.describe()}")
        return value


COUNT = Range(int, 1)  # 1, 2, 3, ...
NATURAL = Range(int, 0)  # 0, 1, 2, ...
FRACTION = Range(float, 0, 1, high_open=True)  # 0 <= x < 1

#: Every numeric flag of every command, by its option string: the one table of what each accepts.
#: A test checks that no numeric option is left out of it.
RANGES: dict[str, Range] = {
    "--hidden": COUNT, "--layers": COUNT, "--members": COUNT, "--epochs": COUNT, "--batch-size": COUNT,
    "--iters": COUNT, "--print-every": COUNT, "--plot-every": COUNT, "--seeds": COUNT, "--top": COUNT,
    "--embed": NATURAL, "--prune": NATURAL, "--seed": NATURAL, "--split-seed": NATURAL, "--noise": NATURAL,
    "--patience": NATURAL, "--threads": NATURAL, "--heads": COUNT, "--teacher-folds": NATURAL,
    "--distill-weight": Range(float, 0, 1), "--distill-temperature": Range(float, 0, low_open=True),
    "--lr": Range(float, 0, low_open=True), "--clip": Range(float, 0), "--weight-decay": Range(float, 0),
    "--dropout": FRACTION, "--label-smoothing": FRACTION, "--class-weight": Range(float, 0, 1),
    "--port": Range(int, 1, 65535),
    "--coverage": Range(float, 0, 1, low_open=True, high_open=True),
    "--min-confidence": Range(float, 0, 1), "--max-out-of-scope": Range(float, 0, 1),
    "--workers": COUNT, "--batch-names": COUNT, "--batch-wait-ms": Range(float, 0, 1000), "--queue-limit": COUNT,
    "--max-body": COUNT, "--nproc": COUNT,
}


def ranged(flag: str) -> Range:
    """The argparse ``type`` of a numeric flag, from :data:`RANGES`."""
    return RANGES[flag]


@dataclass(frozen=True)
class ListOf:
    """argparse ``type`` of a comma-separated list whose every item is checked by ``item``."""

    item: Range

    def __call__(self, text: str) -> list:
        values = [self.item(x.strip()) for x in text.split(",") if x.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {self.item.describe()}, or several separated "
                                             "by commas")
        return values


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="arithmetic of inference: fp32, bf16 (CPUs with bf16 kernels, CUDA) or int8 (dynamic "
                             "quantization of the recurrent and linear layers, CPU) (default: %(default)s)")


#: Torch threads of train/predict/evaluate/compare: one keeps these small models at their fair share of a busy
#: machine (more threads spin waiting for each other when another process takes a core) and the arithmetic,
#: hence the weights, the same whatever the load.
DEFAULT_THREADS = 1


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=ranged("--threads"), default=DEFAULT_THREADS,
                        help="torch threads (default: %(default)s; 0: torch's default, one a core; more help "
                             "only large models on an otherwise idle machine)")


def set_threads(threads: int) -> None:
    """``--threads``: before torch starts its thread pool (0 leaves torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def device_name(text: str) -> str:
    """argparse type of ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (whether CUDA is there is checked on use)."""
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------------------- train

MODEL_FLAGS = ("model", "hidden", "layers", "bidirectional", "embed", "dropout", "members", "heads")
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "optimizer", "sampling", "clip", "patience", "select", "noise",
               "weight_decay", "label_smoothing", "class_weight", "schedule", "seed", "iters", "print_every",
               "plot_every", "distill_weight", "distill_temperature", "teacher_folds")


def _epoch_line(row: dict) -> None:
    """One line on stderr for an epoch, where a progress bar would flood a log file."""
    member = f"member {row['member'] + 1} " if "member" in row else ""
    figures = ", ".join(f"{k} {row[k]:.4f}" for k in ("train_loss", "loss", "accuracy", "macro_f1") if k in row)
    print(f"{member}epoch {row['epoch']}: {figures} ({row['seconds']:.1f}s)", file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    device = _device(args.device)
    fractions = data.parse_split(args.split)
    chosen = {k: getattr(args, k) for k in MODEL_FLAGS + TRAIN_FLAGS if getattr(args, k) is not None}
    model_values = {("name" if k == "model" else k): chosen[k] for k in MODEL_FLAGS if k in chosen}
    settings = resolve_settings(args.preset, worksheet=args.worksheet, model=model_values,
                                train={k: chosen[k] for k in TRAIN_FLAGS if k in chosen}, prune=args.prune)
    config, train_config = settings.model, settings.train
    if settings.worksheet and config.members > 1:
        raise UsageError("--members: an ensemble trains with the batched trainer, not --worksheet")
    if settings.worksheet and (args.nproc > 1 or distributed.launched()):
        raise UsageError("--nproc/torchrun: the worksheet loop trains one name at a time in one process; "
                         "several processes train with the batched trainer")
    if args.nproc > 1 and not distributed.launched():  # this same command, once a process, under torchrun
        return distributed.launch(args.nproc, distributed.without_flag(args.argv, "--nproc"))
    pairs = _load_labelled(args.data, to_train=True)
    parts = data.split(pairs, fractions, seed=args.split_seed)
    labels = data.languages(pairs)
    if not parts.train:
        raise data.DataError(f"{args.data or 'the data'}: the split leaves no training names")
    ranks = distributed.Ranks()
    if distributed.launched():
        ranks, device = distributed.start(device)
    valid = data.encode_pairs(parts.valid, labels) if parts.valid else None
    test = data.encode_pairs(parts.test, labels) if parts.test else None
    soft_targets = None
    if args.teacher:
        settings.teacher, soft_targets = _teacher(args.teacher, settings, parts.train, labels, device)
    show = not args.json and not args.quiet and ranks.is_main
    on_terminal = sys.stderr.isatty()  # a bar on terminals; one line an epoch in logs and pipes
    try:
        model, history, train_pairs = fit(settings, parts.train, valid, labels, device=device,
                                          printer=None if args.json or not ranks.is_main else print,
                                          progress=show and on_terminal,
                                          on_epoch=_epoch_line if show and not on_terminal else None,
                                          soft_targets=soft_targets)
    except BaseException:
        distributed.finish(wait=False)  # another rank may be gone: do not wait for it
        raise
    distributed.finish()
    if not ranks.is_main:  # rank 0 calibrates, tests and writes the checkpoint
        return 0
    if settings.worksheet and valid is not None:
        history.best = {k: v for k, v in validate(model, valid, labels).items() if k != "per_language"}
    # the trust layer (temperature, conformal sets, training prior, out-of-scope detector), on validation only
    layer = trust.calibrate(model, labels, train_pairs, parts.valid)
    test_metrics = validate(model, test, labels) if test is not None else None
    meta = checkpoint_meta(settings, history, parts, train_pairs, preset=args.preset, fractions=fractions,
                           split_seed=args.split_seed, layer=layer, test_metrics=test_metrics,
                           teacher=teacher_summary(settings, args.teacher), processes=ranks.world)
    out = checkpoint.save(args.out, model, labels, meta, trust=layer)
    if args.plot:
        per = "Iterations" if settings.worksheet else "Steps"
        plots.loss_curve(history.loss_steps, history.losses, xlabel=per, path=args.plot,
                         title=f"Training loss: {config.name}, noise {train_config.noise}")
    summary = {
        "model": config.name, "out": str(out), "train_seconds": round(history.train_seconds, 3),
        "names_seen": history.names_seen, "names_per_second": round(history.names_per_second, 1),
        "best_epoch": history.best_epoch, "final_loss": history.final_loss,
        "accuracy": history.best.get("accuracy"), "macro_f1": history.best.get("macro_f1"),
        "n_valid": len(parts.valid), "n_test": len(parts.test),
        "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
        "test_macro_f1": test_metrics["macro_f1"] if test_metrics else None,
    }
    if args.json:
        print(json.dumps(checkpoint.jsonable(summary)))
    else:
        print(f"trained {config.name} on {len(train_pairs)} names in {history.train_seconds:.1f}s "
              f"({history.names_per_second:,.0f} names/s); saved {out}")
        if not parts.valid and not settings.worksheet:
            print(f"no validation names (--split {args.split}): kept the last epoch ({history.best_epoch}); "
                  "no temperature fitted")
        if history.best:
            print(f"validation ({len(parts.valid)} names): accuracy {history.best['accuracy']:.4f}, "
                  f"macro-F1 {history.best['macro_f1']:.4f}" +
                  (f" (best epoch {history.best_epoch})" if history.best_epoch else ""))
        if test_metrics:
            print(f"test ({len(parts.test)} held-out names): accuracy {test_metrics['accuracy']:.4f}, "
                  f"macro-F1 {test_metrics['macro_f1']:.4f}")
        if layer.conformal is not None:
            print(f"trust layer: temperature {layer.temperature:.3f}, {layer.conformal.method} prediction sets, "
                  f"abstain below confidence {layer.min_confidence:.3f}" +
                  (f" or above out-of-scope {layer.max_out_of_scope:.3f} (detector fitted against "
                   f"{layer.info['n_oos_fit']} Faker surnames)" if layer.oos is not None else
                   " (no out-of-scope detector: Faker is not installed)"))
    return 0


def _teacher(path: str, settings, train_pairs: list[data.Pair], labels: list[str], device):
    """``--teacher FILE``: with ``--teacher-folds K`` (K >= 2), FILE's recipe to train out of fold; otherwise
    FILE's own log-probabilities on the training names. Returns (recipe or None, soft targets or None)."""
    if settings.worksheet:
        raise UsageError("--teacher: distillation trains with the batched trainer, not --worksheet")
    doc = checkpoint.read_meta(path)
    if doc["labels"] != labels:
        raise UsageError(f"--teacher {path}: made for the languages {', '.join(doc['labels'])}, not this data's")
    if settings.train.teacher_folds >= 2:
        return recipe(doc), None
    if settings.train.teacher_folds == 1:
        raise UsageError("--teacher-folds 1: expected 0 (the teacher's own probabilities) or 2 or more")
    teacher = checkpoint.load(path, device=device).model
    encoded = data.encode_pairs(train_pairs, labels)
    return None, batched_log_probs(teacher, encoded.tokens, encoded.lengths)[0]


# ------------------------------------------------------------------------------------------- predict

def _format_prediction(p) -> str:
    cells = "   ".join(f"{x['language']:<11} {x['probability'] * 100:5.1f}%" for x in p.predictions)
    line = f"{p.name:<16} {cells}"
    if p.set is not None:
        line += f"   {{{', '.join(p.set)}}}"
    if p.abstained:
        line += f"   ? {p.reason}"
    return line


def _print_prior(prior: dict | None, how: str) -> None:
    if prior:
        mix = ", ".join(f"{lang} {w:.3f}" for lang, w in sorted(prior.items(), key=lambda x: -x[1]) if w >= 0.0005)
        print(f"nameorigin: language mix {how}: {mix}", file=sys.stderr)


def _progress_bar():
    """A names/s progress bar on stderr when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(unit=" names", unit_scale=True, file=sys.stderr, leave=False)


def _trust_options(args: argparse.Namespace, prior) -> dict:
    """The trust layer's keyword arguments of ``predict`` from its flags, with the prior already resolved."""
    return {"coverage": args.coverage, "min_confidence": args.min_confidence,
            "max_out_of_scope": args.max_out_of_scope, "prior": prior}


def _argument_error(name: str) -> str | None:
    """The error of a name argument that is not valid UTF-8 (Python keeps its bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"name argument '{escaped(name)}' is not valid UTF-8 text"
    return None


def escaped(name: str) -> str:
    """A name argument as printable text: bytes that are not UTF-8 as ``\\xNN``."""
    try:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    except UnicodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _predict_names(predictor: Predictor, names: list[str], top: int, options: dict):
    """:meth:`Predictor.predict_with_prior` on the readable arguments; the others get their error row in place."""
    errors = [_argument_error(n) for n in names]
    results, used = predictor.predict_with_prior([n for n, e in zip(names, errors) if e is None], top, **options)
    it = iter(results)
    rows = [next(it) if e is None else Prediction(name=escaped(n), predictions=[], error=e)
            for n, e in zip(names, errors)]
    return rows, used


def _em_note(n_languages: int, distinct: int | None = None) -> str:
    """How far ``--prior auto`` rests on the names: EM shrunk towards the model's own mix."""
    extra = trust.pseudo_names(n_languages)
    weight = f"; the names weigh {distinct / (distinct + extra):.0%}" if distinct else ""
    return f"EM, shrunk towards the training mix as if it were {extra:g} more names{weight}"


def _stdin_spool():
    """Standard input copied to an anonymous temporary file, for ``--prior auto``'s two passes over it."""
    import shutil
    import tempfile
    spool = tempfile.TemporaryFile()
    shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
    spool.seek(0)
    return spool


def _predict_input(args: argparse.Namespace, predictor: Predictor, prior, options: dict) -> int:
    """``predict --input FILE`` (or ``-``, standard input): streamed, with a bar on a terminal."""
    job = frame.FileJob(input=args.input, output=args.output, column=args.column, top=args.top,
                        keep_columns=args.keep_columns, input_format=args.format,
                        output_format="json" if args.json else args.output_format, trust=options)
    if args.output and args.output != "-":
        check_output(args.output, [args.input])  # before any work, not after it
    spool = _stdin_spool() if args.input == "-" and isinstance(prior, str) else None
    try:
        if isinstance(prior, str):  # auto: the mix of the whole file, estimated in a first pass
            job.stream = spool
            options["prior"] = frame.file_prior(predictor, job)
            _print_prior(options["prior"], f"estimated on {args.input if spool is None else 'standard input'} "
                                           f"({_em_note(len(predictor.labels))})")
            if spool is not None:
                spool.seek(0)
        bar = None if args.quiet else _progress_bar()
        try:
            summary = frame.predict_file(predictor, job, progress=None if bar is None else bar.update,
                                         opened=lambda source: _say_column(source, args.column))
        finally:
            if bar is not None:  # a tqdm without a total cannot be tested for truth
                bar.close()
    finally:
        if spool is not None:
            spool.close()
    if not args.quiet:
        print(f"nameorigin: {summary.line()}", file=sys.stderr)
    return 0


def _say_column(source: frame.Source, column: str | None) -> None:
    note = frame.column_note(source, column is not None)
    if note:
        print(f"nameorigin: {note}", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    if not args.names and not args.input:
        raise UsageError("give names to predict, or --input FILE (- for standard input)")
    if args.names and args.input:
        raise UsageError(f"names as arguments ('{escaped(args.names[0])}'...) and --input {args.input} together: "
                         "give one or the other (add the names to the file, or run twice)")
    if args.input and (args.workers or args.scheduler):
        from . import cluster
        if args.json or args.format not in (None, "parquet") or args.output_format not in (None, "parquet"):
            raise UsageError("--workers/--scheduler read Parquet and write a folder of Parquet parts; leave out "
                             "--json, --format and --output-format")
        if args.prior == "auto":
            raise UsageError("--prior auto: not on a cluster (each partition would estimate its own mix); "
                             "estimate it with one process, save it as a JSON file of language weights and "
                             "give --prior FILE")
        labels = checkpoint.read_meta(args.model or default_model_path())["labels"]
        prior = trust.resolve_prior(args.prior, labels)  # a bad --prior stops here, before any work
        options = _trust_options(args, None if prior is None else dict(zip(labels, prior.tolist())))
        summary = cluster.predict_files(cluster.ClusterJob(
            input=args.input, output=args.output, column=args.column, top=args.top, model=args.model,
            keep_columns=args.keep_columns, workers=args.workers, scheduler=args.scheduler,
            precision=args.precision, trust=options))
        print(f"nameorigin: {summary.line()}", file=sys.stderr)
        return 0
    predictor = Predictor.load(args.model, device=_device(args.device), precision=args.precision)
    prior = trust.resolve_prior(args.prior, predictor.labels)  # a bad --prior stops here, before any output
    options = _trust_options(args, prior)
    if args.input:
        return _predict_input(args, predictor, prior, options)
    results, used = _predict_names(predictor, args.names, args.top, options)
    if isinstance(prior, str):
        distinct = len({n for n, p in zip(args.names, results) if not p.error})
        _print_prior(used, f"estimated on these {distinct} distinct name(s) ({_em_note(len(predictor.labels), distinct)})")
    bad = [p for p in results if p.error]
    if args.json:
        print(json.dumps([p.to_dict() for p in results], indent=None))
    else:
        for p in results:
            if not p.error:
                print(_format_prediction(p))
    for p in bad:
        print(f"nameorigin: {p.error}", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else 0


# ------------------------------------------------------------------------------------------- evaluate

def cmd_evaluate(args: argparse.Namespace) -> int:
    predictor = Predictor.load(args.model, device=_device(args.device), precision=args.precision)
    pairs = _load_labelled(args.data)
    # opened (and refused, if it must be) before the evaluation runs, not after
    oos_source = _out_of_scope_source(predictor, args.out_of_scope, model=args.model or "the bundled model")
    encoded = data.encode_pairs(pairs, predictor.labels)
    lp, _ = batched_log_probs(predictor.model, encoded.tokens, encoded.lengths)
    result = metrics(encoded.labels, lp.argmax(1), predictor.labels)
    temperature = predictor.temperature
    before, after = lp.softmax(1), (lp / temperature).softmax(1)
    result["temperature"] = temperature
    result["ece_before"] = expected_calibration_error(before, encoded.labels)
    result["ece_after"] = expected_calibration_error(after, encoded.labels)
    if args.reliability:
        plots.reliability_diagram(reliability(before, encoded.labels), reliability(after, encoded.labels),
                                  temperature=temperature, path=args.reliability,
                                  title=f"Reliability on {Path(args.data or 'the data').name} ({len(pairs)} names)")
    names = [n for n, _ in pairs]
    layer = predictor.trust
    applied = layer.apply(lp, names)
    if layer.conformal is not None:
        result["sets"] = {str(c): set_coverage(layer.apply(lp, names, coverage=c).sets, encoded.labels.numpy(),
                                               predictor.labels) for c in trust.COVERAGES}
    if layer.min_confidence is not None:
        result["abstained"] = float(applied.abstained.mean())
    if oos_source is not None:
        result["out_of_scope"] = _out_of_scope_report(predictor, applied, oos_source)
    if args.risk_coverage:
        correct = (lp.argmax(1) == encoded.labels).numpy()
        curves = {"top probability": risk_coverage(after.max(1).values.numpy(), correct)}
        if applied.out_of_scope is not None:
            curves["top probability x (1 - out-of-scope)"] = risk_coverage(
                after.max(1).values.numpy() * (1 - applied.out_of_scope), correct)
        plots.risk_coverage(curves, path=args.risk_coverage,
                            title=f"Risk-coverage on {Path(args.data or 'the data').name} ({len(pairs)} names)")
    if args.plot:
        cm = confusion_matrix(encoded.labels, lp.argmax(1), len(predictor.labels))
        plots.confusion(cm.numpy(), predictor.labels, path=args.plot,
                        title=f"Confusion matrix on {Path(args.data or 'the data').name} ({len(pairs)} names; "
                              "rows: true language)")
    if args.json:
        print(json.dumps(result))
    else:
        print(format_report(result))
        trust_report = format_trust_report(result)
        if trust_report:
            print(trust_report)
    return 0


def _out_of_scope_source(predictor: Predictor, path: str | None, *, model: str) -> frame.Source | None:
    """``evaluate --out-of-scope``'s names, opened as any input predict reads (text, CSV/TSV, JSON lines,
    Parquet); None without the option."""
    if path is None:
        return None
    if predictor.trust.oos is None:
        raise UsageError(f"--out-of-scope: {model} has no out-of-scope detector "
                         "(trained before the trust layer, or without Faker); retrain it")
    return frame.open_source(path)


def _out_of_scope_report(predictor: Predictor, in_scope, source: frame.Source) -> dict:
    """Out-of-scope AUROC and abstention on names of other languages (``source``) against ``in_scope``."""
    path = source.path
    raw = [name for batch in source.batches for name in batch.column(source.column).to_pylist() if name is not None]
    results = predictor.predict(raw, top=1)
    readable = [p for p in results if not p.error]
    if not readable:
        raise data.DataError(f"{path}: no readable names")
    scores = [p.out_of_scope for p in readable]
    top = [p.predictions[0]["probability"] for p in readable]
    in_top = in_scope.probabilities.max(1)
    return {"n": len(readable), "unreadable": len(results) - len(readable),
            "auroc": auroc(in_scope.out_of_scope, scores), "auroc_top_probability": auroc(1 - in_top, [1 - t for t in top]),
            "abstained": sum(p.abstained for p in readable) / len(readable),
            "abstained_in_scope": float(in_scope.abstained.mean())}


# ------------------------------------------------------------------------------------------- attention

def cmd_attention(args: argparse.Namespace) -> int:
    predictor = Predictor.load(args.model)
    if not predictor.has_attention:
        raise UsageError(f"{args.model or 'the bundled model'}: a {predictor.model.config.name} model has no "
                         "attention; train one with --model gru-attention")
    results = predictor.predict(args.names, top=1, attention=True)
    bad = [r for r in results if r.error]
    good = [r for r in results if not r.error]
    for r in good:
        print(f"{r.name} -> {r.predictions[0]['language']} ({r.predictions[0]['probability']:.2f})")
        print("  " + "  ".join(f"{ch}:{w:.2f}" for ch, w in zip(r.folded, r.attention)))
    if args.plot and good:
        plots.attention_map([r.folded for r in good], [r.attention for r in good], path=args.plot,
                            title=f"Attention of {Path(args.model).name if args.model else 'the bundled model'}")
    for r in bad:
        print(f"nameorigin: {r.error}", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else 0


# ------------------------------------------------------------------------------------------- compare

def cmd_compare(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m != experiments.BASELINE and m not in REGISTRY:
            raise UnknownModel(f"unknown model {m!r}; known: {', '.join(REGISTRY)}, {experiments.BASELINE}")
    config = experiments.CompareConfig(models=models, noise=args.noise, seeds=args.seeds,
                                       worksheet=args.worksheet, epochs=args.epochs, iters=args.iters,
                                       hidden=args.hidden, prune=args.prune)
    pairs = _load_labelled(args.data, to_train=True)
    experiments.compare(pairs, config, args.out)
    print(f"wrote {Path(args.out) / 'results.csv'}, results.md, loss curves and report.md")
    return 0


# ------------------------------------------------------------------------------------------- serve

def _check_port_free(host: str, port: int) -> None:
    """A port another program holds (or a host this machine does not have) is refused before "serving" is said."""
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise UsageError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); "
                             "another server holds it? pick another --port") from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import ServeConfig, app_from_env, config_to_env, create_app
    config = ServeConfig(model=args.model, precision=args.precision, batch_names=args.batch_names,
                         batch_wait_ms=args.batch_wait_ms, queue_limit=args.queue_limit, max_body=args.max_body,
                         threads=args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.model, precision=args.precision)  # load errors exit 2 before any port opens
    _check_port_free(args.host, args.port)
    ck = predictor.checkpoint
    print(f"nameorigin: serving {args.model or 'the bundled model'} ({ck.config.name}, hidden {ck.config.hidden}, "
          f"{args.precision}) at http://{args.host}:{args.port}/ with {args.workers} worker(s); "
          f"batches of up to {args.batch_names} names or {args.batch_wait_ms:g} ms", flush=True)
    # keep-alive longer than a loaded server's slowest answer, so clients never reuse a connection it just closed
    common = dict(host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
                  access_log=args.verbose, timeout_keep_alive=30)
    if args.workers == 1:
        uvicorn.run(create_app(predictor, config=config), **common)
    else:  # worker processes build their own app from the environment (uvicorn needs an import string)
        del predictor
        os.environ.update(config_to_env(config))
        uvicorn.run(f"{app_from_env.__module__}:{app_from_env.__name__}", factory=True, workers=args.workers,
                    **common)
    return 0


# ------------------------------------------------------------------------------------------- presets

def cmd_presets(args: argparse.Namespace) -> int:
    for name, preset in PRESETS.items():
        settings = resolve_settings(name)
        print(f"{name}\n  {preset.description}\n  model: {asdict(settings.model)}")
        if settings.teacher is not None:
            print(f"  teacher: the {preset.teacher} preset, {settings.train.teacher_folds} folds out of fold")
        print(f"  {'worksheet' if settings.worksheet else 'trainer'}: {asdict(settings.train)}"
              + (f", prune {settings.prune}" if settings.prune else "") + "\n")
    return 0


# ------------------------------------------------------------------------------------------- split

def cmd_split(args: argparse.Namespace) -> int:
    fractions = data.parse_split(args.split)
    pairs = _load_labelled(args.data, to_train=True)
    parts = data.split(pairs, fractions, seed=args.seed)
    out = Path(args.out)
    for part_name, part in [("train", parts.train), ("valid", parts.valid), ("test", parts.test)]:
        if not part:
            continue
        with atomic_output(str(out / f"{part_name}.tsv")) as fh:
            fh.write("name\tlanguage\n")
            fh.writelines(f"{name}\t{lang}\n" for name, lang in part)
        print(f"{out / (part_name + '.tsv')}: {len(part)} names, {len({n for n, _ in part})} distinct")
    return 0


# ------------------------------------------------------------------------------------------- parser

class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, where it has one and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nameorigin", description="Which language does a name come from?",
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"nameorigin {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    # every command's help shows its defaults
    sub = p.add_subparsers(dest="command", required=True,
                           parser_class=functools.partial(argparse.ArgumentParser, formatter_class=HelpFormatter))

    t = sub.add_parser("train", help="train a model on labelled names")
    t.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label "
                                  "(default: $NAMEORIGIN_DATA, else the tutorial's archive)")
    t.add_argument("--preset", help=f"named configuration: {', '.join(PRESETS)} (see `nameorigin presets`); "
                                     "flags given beside it override it. Without one: default, or bare "
                                     "settings with --worksheet")
    t.add_argument("--model", help=f"one of: {', '.join(REGISTRY)}")
    t.add_argument("--hidden", type=ranged("--hidden"), help="hidden size")
    t.add_argument("--layers", type=ranged("--layers"), help="stacked recurrent layers")
    t.add_argument("--bidirectional", action="store_const", const=True, help="add a backward direction")
    t.add_argument("--embed", type=ranged("--embed"), help="learned embedding size; 0: the seeds' one-hot input")
    t.add_argument("--dropout", type=ranged("--dropout"), help="dropout before the output layer and between layers")
    t.add_argument("--members", type=ranged("--members"), help="train N models from seeds SEED..SEED+N-1 and average "
                                                     "their probabilities (an ensemble in one checkpoint)")
    t.add_argument("--heads", type=ranged("--heads"), help="transformer: attention heads; hidden must be a multiple "
                                                          f"({ModelConfig.heads})")
    t.add_argument("--teacher", help="distil: a checkpoint whose probabilities teach this model beside the labels "
                                     "(default: none; the bundled preset trains its own teachers)")
    t.add_argument("--teacher-folds", type=ranged("--teacher-folds"),
                   help=f"with --teacher: 0 uses its own probabilities on the training names; K >= 2 trains its "
                        f"recipe on K folds, each predicting the fold it did not see ({TrainConfig.teacher_folds})")
    t.add_argument("--distill-weight", type=ranged("--distill-weight"),
                   help=f"share of the teacher's loss in the total, 0 to 1 ({TrainConfig.distill_weight})")
    t.add_argument("--distill-temperature", type=ranged("--distill-temperature"),
                   help=f"softens teacher and student before comparing them ({TrainConfig.distill_temperature})")
    t.add_argument("--out", default="model.safetensors",
                   help="checkpoint to write (missing parent folders are created)")
    t.add_argument("--split", default="0.8,0.1,0.1", help="TRAIN,VALID,TEST fractions of distinct names")
    t.add_argument("--split-seed", type=ranged("--split-seed"), default=0, help="seed of the leak-free split")
    t.add_argument("--prune", type=ranged("--prune"), help="keep at most N training names a language (seed 000: 50)")
    t.add_argument("--seed", type=ranged("--seed"), help="seed of initial weights, sampling and noise")
    t.add_argument("--noise", type=ranged("--noise"), help="the worksheet's punctuation noise level")
    t.add_argument("--lr", type=ranged("--lr"), help=f"learning rate ({TrainConfig.lr}; worksheet {WorksheetConfig.lr})")
    t.add_argument("--epochs", type=ranged("--epochs"), help=f"most epochs ({TrainConfig.epochs})")
    t.add_argument("--batch-size", type=ranged("--batch-size"), help=f"names a batch ({TrainConfig.batch_size})")
    t.add_argument("--optimizer", choices=["adam", "sgd"], help=f"optimizer ({TrainConfig.optimizer})")
    t.add_argument("--sampling", choices=["natural", "balanced"], help="balanced: each language equally often")
    t.add_argument("--clip", type=ranged("--clip"), help=f"gradient-norm clipping, 0 off ({TrainConfig.clip})")
    t.add_argument("--patience", type=ranged("--patience"), help=f"early stop after N epochs without progress ({TrainConfig.patience})")
    t.add_argument("--select", choices=["macro_f1", "accuracy", "loss"], help="validation figure picking the best epoch")
    t.add_argument("--weight-decay", type=ranged("--weight-decay"), help=f"L2 weight decay ({TrainConfig.weight_decay})")
    t.add_argument("--label-smoothing", type=ranged("--label-smoothing"),
                   help=f"label smoothing of the loss, 0 to below 1 ({TrainConfig.label_smoothing})")
    t.add_argument("--class-weight", type=ranged("--class-weight"),
                   help="loss weight of each language: (N / (C n_c)) ** POWER; 0 none, 0.5 sqrt, 1 balanced")
    t.add_argument("--schedule", choices=["constant", "cosine", "plateau"], help="learning-rate schedule")
    t.add_argument("--worksheet", action="store_const", const=True, help="the seeds' one-name-at-a-time loop")
    t.add_argument("--iters", type=ranged("--iters"), help=f"worksheet steps ({WorksheetConfig.iters})")
    t.add_argument("--print-every", type=ranged("--print-every"), help=f"worksheet: a line every N steps ({WorksheetConfig.print_every})")
    t.add_argument("--plot-every", type=ranged("--plot-every"), help=f"worksheet: a loss average every N steps ({WorksheetConfig.plot_every})")
    t.add_argument("--plot", help="save the run's loss curve as PNG")
    t.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_threads(t)
    t.add_argument("--nproc", type=ranged("--nproc"), default=1,
                   help="train in N processes with DistributedDataParallel, launched by torchrun (gloo on the "
                        "CPU, NCCL on CUDA; each process takes 1/N of every epoch's batches) (default: %(default)s)")
    t.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="rank languages for names")
    pr.add_argument("names", nargs="*", help="names to predict (or use --input)")
    pr.add_argument("--model", help="checkpoint (default: the bundled model)")
    pr.add_argument("--top", type=ranged("--top"), default=3, help="languages a name (default: 3)")
    pr.add_argument("--json", action="store_true", help="JSON: one list for names given as arguments, one line "
                                                        "{line, name, predictions, error} a name for --input (default: off)")
    pr.add_argument("--input", help="file of names: .txt (one a line), .csv, .tsv, .jsonl or .parquet (by extension; "
                                    "see --format); with --workers/--scheduler a glob of Parquet files or any fsspec path")
    pr.add_argument("--column", help="column holding the names: header name or 0-based index (default: the column "
                                     "headed name/surname/..., else the first)")
    pr.add_argument("--output", help="write here, atomically, in the format of its extension (default: CSV, or JSON "
                                     "lines with --json, on stdout); with --workers/--scheduler a folder of parts")
    pr.add_argument("--format", choices=sorted(set(frame.FORMATS.values())),
                    help="format of --input (default: from its extension)")
    pr.add_argument("--output-format", choices=sorted(set(frame.FORMATS.values())),
                    help="format of --output (default: from its extension; CSV on stdout)")
    pr.add_argument("--keep-columns", action="store_true",
                    help="keep the input's other columns in the output (default: line number and name only)")
    pr.add_argument("--workers", type=ranged("--workers"),
                    help="run on a local Dask cluster of N worker processes (needs nameorigin[cluster]; default: "
                         "one process, no Dask)")
    pr.add_argument("--scheduler", help="run on an existing Dask cluster at this address, e.g. tcp://HOST:8786 "
                                        "(default: none)")
    pr.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_threads(pr)
    pr.add_argument("--quiet", action="store_true", help="no progress bar and no summary line on stderr")
    pr.add_argument("--coverage", type=ranged("--coverage"),
                    help="give each name the conformal set of languages that holds the true one with this "
                         "probability, e.g. 0.9 (default: no sets)")
    pr.add_argument("--prior", help="the language mix of your names: uniform, auto (estimated on the input by EM, "
                                    "printed to stderr) or a JSON/CSV file of language,weight (default: the "
                                    "training data's mix)")
    pr.add_argument("--min-confidence", type=ranged("--min-confidence"),
                    help="abstain (low-confidence) below this top probability (default: the checkpoint's, "
                         "chosen on validation)")
    pr.add_argument("--max-out-of-scope", type=ranged("--max-out-of-scope"),
                    help="abstain (out-of-scope) above this out-of-scope score (default: the checkpoint's, "
                         "chosen on validation)")
    add_precision(pr)
    pr.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", help="accuracy, macro-F1 and per-language figures on labelled names")
    e.add_argument("--model", help="checkpoint (default: the bundled model)")
    e.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    e.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    e.add_argument("--plot", help="save the row-normalised confusion matrix as PNG")
    e.add_argument("--reliability", help="save a reliability diagram (before and after temperature scaling) as PNG")
    e.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_threads(e)
    e.add_argument("--risk-coverage", help="save a risk-coverage curve as PNG (default: none)")
    e.add_argument("--out-of-scope", help="names of other languages (any input predict --input reads): report the "
                                          "out-of-scope AUROC and abstention rates against the evaluated names "
                                          "(default: none)")
    add_precision(e)
    e.set_defaults(func=cmd_evaluate)
    a = sub.add_parser("attention", help="each character's weight in the model's attention pooling (gru-attention "
                                         "and transformer models, and ensembles of them)")
    a.add_argument("names", nargs="+", help="names to show")
    a.add_argument("--model", help="checkpoint of a model with attention pooling (default: the bundled model)")
    a.add_argument("--plot", help="save a heat map as PNG")
    a.set_defaults(func=cmd_attention)

    c = sub.add_parser("compare", help="the worksheet's experiments: models x noise x seeds, tables, curves, report")
    c.add_argument("--models", default="rnn,gru,gru-attention,baseline",
                   help=f"comma-separated: {', '.join(REGISTRY)}, {experiments.BASELINE} (needs scikit-learn)")
    c.add_argument("--noise", type=ListOf(ranged("--noise")), default="0,5", help="noise levels, comma-separated")
    c.add_argument("--seeds", type=ranged("--seeds"), default=1, help="seeds per model and noise level")
    c.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    c.add_argument("--out", required=True,
                   help="folder for results.csv, results.md, loss_noise*.png, report.md (created if missing)")
    c.add_argument("--epochs", type=ranged("--epochs"), default=experiments.CompareConfig.epochs, help="batched trainer's epochs")
    c.add_argument("--worksheet", action="store_true", help="train with the seeds' one-name loop")
    c.add_argument("--iters", type=ranged("--iters"), default=experiments.CompareConfig.iters, help="worksheet loop steps")
    c.add_argument("--hidden", type=ranged("--hidden"), help="hidden size (default: 32 with --worksheet, else the default preset's)")
    c.add_argument("--prune", type=ranged("--prune"), default=experiments.CompareConfig.prune,
                   help="worksheet loop: names a language, as seed 000")
    add_threads(c)
    c.set_defaults(func=cmd_compare)

    sv = sub.add_parser("serve", help="the HTTP API and web page")
    sv.add_argument("--model", help="checkpoint (default: the bundled model)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=ranged("--port"), default=8000, help="port to listen on")
    sv.add_argument("--threads", type=ranged("--threads"), default=ServeConfig.threads,
                    help="torch threads for inference (default: %(default)s; requests are small and more threads "
                         "spin against the HTTP work)")
    sv.add_argument("--workers", type=ranged("--workers"), default=1,
                    help="server processes, each with its own model (default: %(default)s)")
    sv.add_argument("--batch-names", type=ranged("--batch-names"), default=ServeConfig.batch_names,
                    help="a batch of concurrent requests closes at this many names (default: %(default)s; "
                         "1 with --batch-wait-ms 0 turns batching off)")
    sv.add_argument("--batch-wait-ms", type=ranged("--batch-wait-ms"), default=ServeConfig.batch_wait_ms,
                    help="...or this many milliseconds after its first request (default: %(default)s)")
    sv.add_argument("--queue-limit", type=ranged("--queue-limit"), default=ServeConfig.queue_limit,
                    help="names waiting for the model above which requests get 503 with Retry-After "
                         "(default: %(default)s)")
    sv.add_argument("--max-body", type=ranged("--max-body"), default=ServeConfig.max_body,
                    help="largest request body in bytes; larger ones get 413 unread (default: %(default)s)")
    add_precision(sv)
    sv.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                    help="access log and info logging (also accepted before the command)")
    sv.set_defaults(func=cmd_serve)

    ps = sub.add_parser("presets", help="list the named training configurations")
    ps.set_defaults(func=cmd_presets)

    sp = sub.add_parser("split", help="write a leak-free, stratified split of labelled names as TSV files")
    sp.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    sp.add_argument("--split", default="0.8,0,0.2", help="TRAIN,VALID,TEST fractions of distinct names")
    sp.add_argument("--seed", type=ranged("--seed"), default=0, help="seed of the split")
    sp.add_argument("--out", required=True, help="folder for train.tsv, valid.tsv, test.tsv (created if missing)")
    sp.set_defaults(func=cmd_split)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc relaunches the same command
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="nameorigin: %(message)s")
    if getattr(args, "threads", None) and args.func is not cmd_serve:  # serve sets its model thread's
        set_threads(args.threads)
    # SIGTERM as SIGINT: the write in progress is undone (serve leaves signals to uvicorn)
    terminate = args.func is not cmd_serve and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if terminate else None
    try:
        return args.func(args)
    except (data.DataError, CheckpointError, BadName, UnknownModel, UnknownPreset, UsageError, TrustError,
            PrecisionError, OutputError) as e:
        print(f"nameorigin: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("nameorigin: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("nameorigin: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if terminate:
            signal.signal(signal.SIGTERM, previous)
