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

from . import __version__, api, checkpoint, data, distributed, experiments, frame, fullname, trust
from .atomic import OutputError, atomic_text, check_output, same_file
from .checkpoint import CheckpointError
from .errors import InputError
from .evaluation import format_report, format_trust_report
from .models import PRECISIONS, REGISTRY, ModelConfig, PrecisionError, UnknownModel
from .predict import Prediction, Predictor, default_model_path, model_info, prior_names
from .service import ServeConfig
from .text import BadName
from .training import PRESETS, TrainConfig, UnknownPreset, WorksheetConfig, resolve_settings

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


#: Library parameters whose flag is not ``--`` + the name with dashes (see :func:`flag_of`).
FLAGS = {"source": "--data", "names": "--data", "pairs": "--data", "fractions": "--split"}


def flag_of(param: str) -> str:
    """The flag a library parameter comes through: ``min_confidence`` -> ``--min-confidence``."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


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
            return (
                f"{what} from {self.low}{' (exclusive)' if self.low_open else ''} to "
                f"{self.high}{' (exclusive)' if self.high_open else ''}"
            )
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
    "--hidden": COUNT,
    "--layers": COUNT,
    "--members": COUNT,
    "--epochs": COUNT,
    "--batch-size": COUNT,
    "--iters": COUNT,
    "--print-every": COUNT,
    "--plot-every": COUNT,
    "--seeds": COUNT,
    "--top": COUNT,
    "--embed": NATURAL,
    "--prune": NATURAL,
    "--seed": NATURAL,
    "--split-seed": NATURAL,
    "--noise": NATURAL,
    "--patience": NATURAL,
    "--threads": NATURAL,
    "--heads": COUNT,
    "--teacher-folds": NATURAL,
    "--distill-weight": Range(float, 0, 1),
    "--corpus-weight": Range(float, 0, low_open=True),
    "--pretrain-epochs": COUNT,
    "--corpus-per-language": NATURAL,
    "--distill-temperature": Range(float, 0, low_open=True),
    "--lr": Range(float, 0, low_open=True),
    "--clip": Range(float, 0),
    "--weight-decay": Range(float, 0),
    "--dropout": FRACTION,
    "--label-smoothing": FRACTION,
    "--class-weight": Range(float, 0, 1),
    "--port": Range(int, 1, 65535),
    "--coverage": Range(float, 0, 1, low_open=True, high_open=True),
    "--min-confidence": Range(float, 0, 1),
    "--max-out-of-scope": Range(float, 0, 1),
    "--workers": COUNT,
    "--batch-names": COUNT,
    "--batch-wait-ms": Range(float, 0, 1000),
    "--queue-limit": COUNT,
    "--max-body": COUNT,
    "--nproc": COUNT,
    "--limit-concurrency": COUNT,
    "--per-language": COUNT,
    "--request-timeout": Range(float, 0, 3600, low_open=True),
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
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected {self.item.describe()}, or several separated by commas"
            )
        return values


def host_list(text: str) -> list[str]:
    """argparse ``type`` of ``--allowed-hosts``: host names separated by commas."""
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts or any(" " in h or "/" in h for h in hosts):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected host names separated by commas, e.g. api.example.org,localhost"
        )
    return hosts


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="arithmetic of inference: fp32, bf16 (CPUs with bf16 kernels, CUDA) or int8 (dynamic "
        "quantization of the recurrent and linear layers, CPU) (default: %(default)s)",
    )


def add_model_sha256(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-sha256",
        metavar="HEX",
        help="refuse the checkpoint unless its file has this SHA-256 (as sha256sum prints it); the "
        "hash a checkpoint records finds damage, this one also finds a changed file",
    )


#: Torch threads of train/predict/evaluate/compare: one keeps these small models at their fair share of a busy
#: machine (more threads spin waiting for each other when another process takes a core) and the arithmetic,
#: hence the weights, the same whatever the load.
DEFAULT_THREADS = 1


def add_first_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--first-model",
        help="first-name checkpoint (name_kind first) that reads given names beside --model (default: the "
        "bundled one, when this nameorigin ships one)",
    )


def add_name_type(parser: argparse.ArgumentParser, default: str = fullname.DEFAULT_NAME_TYPE) -> None:
    parser.add_argument(
        "--name-type",
        choices=list(fullname.NAME_TYPES),
        default=default,
        help="how a name is read: surname (whole, as a surname), first (a given name), full (given and family "
        "names), auto (decided from the parse, as nameorigin parse shows it); any but surname adds each "
        "name's parts to the output (default: %(default)s)",
    )


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=ranged("--threads"),
        default=DEFAULT_THREADS,
        help="torch threads (default: %(default)s; 0: torch's default, one a core; more help "
        "only large models on an otherwise idle machine)",
    )


def set_threads(threads: int) -> None:
    """``--threads``: before torch starts its thread pool (0 leaves torch's default), and the same limit for the
    BLAS and OpenMP pools loaded by now (numpy's), by threadpoolctl where it is installed (it comes with
    scikit-learn); those loaded later (SciPy's, scikit-learn's) are held at the n-gram fit
    (:func:`nameorigin.training._blas_threads`)."""
    if threads:
        torch.set_num_threads(threads)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        threadpool_limits(limits=threads)


def device_name(text: str) -> str:
    """argparse type of ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (whether CUDA is there is checked on use)."""
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------------------- train

MODEL_FLAGS = ("model", "hidden", "layers", "bidirectional", "embed", "dropout", "members", "heads", "compact")
TRAIN_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "sampling",
    "clip",
    "patience",
    "select",
    "noise",
    "weight_decay",
    "label_smoothing",
    "class_weight",
    "schedule",
    "seed",
    "iters",
    "print_every",
    "plot_every",
    "distill_weight",
    "distill_temperature",
    "teacher_folds",
    "corpus_mode",
    "corpus_weight",
    "corpus_per_language",
    "corpus_prior",
    "pretrain_epochs",
    "name_kind",
)


def _epoch_line(row: dict) -> None:
    """One line on stderr for an epoch, where a progress bar would flood a log file."""
    member = f"member {row['member'] + 1} " if "member" in row else ""
    figures = ", ".join(
        f"{k} {row[k]:.4f}"
        for k in ("train_loss", "loss", "accuracy", "macro_f1", "corpus_accuracy", "corpus_macro_f1")
        if k in row
    )
    print(f"{member}epoch {row['epoch']}: {figures} ({row['seconds']:.1f}s)", file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    device = _device(args.device)
    fractions = data.parse_split(args.split)
    chosen = {k: getattr(args, k) for k in MODEL_FLAGS + TRAIN_FLAGS if getattr(args, k) is not None}
    if args.prune is not None:
        chosen["prune"] = args.prune
    options = dict(preset=args.preset, worksheet=args.worksheet, **chosen)
    settings = api.train_settings(**options)  # refused here, before any process is launched
    if settings.worksheet and (args.nproc > 1 or distributed.launched()):
        raise UsageError(
            "--nproc/torchrun: the worksheet loop trains one name at a time in one process; "
            "several processes train with the batched trainer"
        )
    if args.nproc > 1 and not distributed.launched():  # this same command, once a process, under torchrun
        return distributed.launch(args.nproc, distributed.without_flag(args.argv, "--nproc"))
    show = not args.json and not args.quiet
    on_terminal = sys.stderr.isatty()  # a bar on terminals; one line an epoch in logs and pipes
    trained = api.train(
        args.data,
        split=fractions,
        split_seed=args.split_seed,
        teacher=args.teacher,
        device=device,
        corpus=args.corpus,
        exclude=args.exclude or (),
        printer=None if args.json else print,
        progress=show and on_terminal,
        on_epoch=_epoch_line if show and not on_terminal else None,
        **options,
    )
    if trained is None:  # another rank of a distributed run: rank 0 writes the checkpoint
        return 0
    out = trained.save(args.out)
    history, parts, layer, test_metrics = trained.history, trained.split, trained.trust, trained.test_metrics
    config = trained.settings.model
    if args.plot:
        from . import plots

        per = "Iterations" if trained.settings.worksheet else "Steps"
        plots.loss_curve(
            history.loss_steps,
            history.losses,
            xlabel=per,
            path=args.plot,
            title=f"Training loss: {config.name}, noise {trained.settings.train.noise}",
        )
    summary = {
        "model": config.name,
        "out": str(out),
        "train_seconds": round(history.train_seconds, 3),
        "names_seen": history.names_seen,
        "names_per_second": round(history.names_per_second, 1),
        "best_epoch": history.best_epoch,
        "final_loss": history.final_loss,
        "accuracy": history.best.get("accuracy"),
        "macro_f1": history.best.get("macro_f1"),
        "n_valid": len(parts.valid),
        "n_test": len(parts.test),
        "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
        "test_macro_f1": test_metrics["macro_f1"] if test_metrics else None,
    }
    if args.json:
        print(json.dumps(checkpoint.jsonable(summary)))
    else:
        real = trained.meta["training"].get("corpus")
        print(
            f"trained {config.name} on {len(trained.train_pairs)} names"
            + (f" and {real['n_train']} corpus names" if real else "")
            + f" in {history.train_seconds:.1f}s "
            f"({history.names_per_second:,.0f} names/s); saved {out}"
        )
        if not parts.valid and not trained.settings.worksheet:
            print(
                f"no validation names (--split {args.split}): kept the last epoch ({history.best_epoch}); "
                "no temperature fitted"
            )
        if history.best:
            print(
                f"validation ({len(parts.valid)} names): accuracy {history.best['accuracy']:.4f}, "
                f"macro-F1 {history.best['macro_f1']:.4f}"
                + (f" (best epoch {history.best_epoch})" if history.best_epoch else "")
            )
        if test_metrics:
            print(
                f"test ({len(parts.test)} held-out names): accuracy {test_metrics['accuracy']:.4f}, "
                f"macro-F1 {test_metrics['macro_f1']:.4f}"
            )
        if layer.conformal is not None:
            print(
                f"trust layer: temperature {layer.temperature:.3f}, {layer.conformal.method} prediction sets, "
                f"abstain below confidence {layer.min_confidence:.3f}"
                + (
                    f" or above out-of-scope {layer.max_out_of_scope:.3f} (detector fitted against "
                    + (
                        f"{layer.info['n_oos_fit']} surnames: {layer.info['n_oos_fit_faker']} Faker, "
                        f"{layer.info['n_oos_fit_real']} real from the corpus)"
                        if real
                        else f"{layer.info['n_oos_fit']} Faker surnames)"
                    )
                    if layer.oos is not None
                    else " (no out-of-scope detector: Faker is not installed)"
                )
            )
    return 0


# ------------------------------------------------------------------------------------------- predict


def _padded(name: str, width: int = 16) -> str:
    """``name`` padded to ``width`` terminal columns: a wide character (Han, kana, Hangul) takes two."""
    import unicodedata

    shown = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in name)
    return name + " " * max(0, width - shown)


def _format_prediction(p) -> str:
    cells = "   ".join(f"{x['language']:<11} {x['probability'] * 100:5.1f}%" for x in p.predictions)
    line = f"{_padded(p.name)} {cells}"
    if p.set is not None:
        line += f"   {{{', '.join(p.set)}}}"
    if p.abstained:
        line += f"   ? {p.reason}"
    if p.parts is not None and _parts_say_more(p):
        line += "\n" + _format_parts(p)
    return line


def _parts_say_more(p) -> bool:
    """Whether a name's parts line says more than its answer: not for a lone one-word surname in Latin letters."""
    if p.name_type != "surname" or p.note or p.reading not in (None, "none") or len(p.parts) != 1:
        return True
    return not p.parts[0]["used"] or " " in p.parts[0]["text"]


def _format_parts(p) -> str:
    """A full or first name's second line: each part, how it was read, its own top language or why it
    dropped out, and the reading used."""
    cells = []
    for part in p.parts:
        read = f" (read {part['read']})" if part["read"] and part["read"] != part["text"] else ""
        if part["used"] and part["predictions"]:
            best = part["predictions"][0]
            said = f"{best['language']} {best['probability'] * 100:.1f}%"
        else:
            said = f"not used: {part['dropped']}"
        cells.append(f"{part['part']} {part['text']}{read}: {said}")
    extra = [f"{p.reading} reading"] if p.reading not in (None, "none") else []
    return "    " + "; ".join(cells + extra + ([p.note] if p.note else []))


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
    return {
        "coverage": args.coverage,
        "min_confidence": args.min_confidence,
        "max_out_of_scope": args.max_out_of_scope,
        "prior": prior,
    }


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
    readable = [n for n, e in zip(names, errors, strict=True) if e is None]
    results, used = predictor.predict_with_prior(readable, top, **options)
    it = iter(results)
    rows = [
        next(it) if e is None else Prediction(name=escaped(n), predictions=[], error=e)
        for n, e in zip(names, errors, strict=True)
    ]
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

    spool = tempfile.TemporaryFile()  # noqa: SIM115 (returned: the caller closes it)
    shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
    spool.seek(0)
    return spool


def _predict_input(args: argparse.Namespace, predictor: Predictor, prior, options: dict) -> int:
    """``predict --input FILE`` (or ``-``, standard input): streamed, with a bar on a terminal."""
    job = frame.FileJob(
        input=args.input,
        output=args.output,
        column=args.column,
        top=args.top,
        keep_columns=args.keep_columns,
        input_format=args.format,
        output_format="json" if args.json else args.output_format,
        trust=options,
        keep_formulas=args.keep_formulas,
        name_type=args.name_type,
        first_column=args.first_column,
        last_column=args.last_column,
    )
    if args.output and args.output != "-":
        check_output(args.output, [args.input])  # before any work, not after it
    spool = _stdin_spool() if args.input == "-" and isinstance(prior, str) else None
    try:
        if isinstance(prior, str):  # auto: the mix of the whole file, estimated in a first pass
            job.stream = spool
            options["prior"], distinct = frame.file_prior(predictor, job)
            where = args.input if spool is None else "standard input"
            _print_prior(
                options["prior"],
                f"estimated on {where}, {distinct} distinct name(s) ({_em_note(len(predictor.labels), distinct)})",
            )
            if spool is not None:
                spool.seek(0)
        bar = None if args.quiet else _progress_bar()
        try:
            summary = frame.predict_file(
                predictor,
                job,
                progress=None if bar is None else bar.update,
                opened=lambda source: _say_column(
                    source, args.column is not None or job.first_column is not None or job.last_column is not None
                ),
            )
        finally:
            if bar is not None:  # a tqdm without a total cannot be tested for truth
                bar.close()
    finally:
        if spool is not None:
            spool.close()
    if not args.quiet:
        print(f"nameorigin: {summary.line()}", file=sys.stderr)
    return 0


def _say_column(source: frame.Source, chosen: bool) -> None:
    note = frame.column_note(source, chosen)
    if note:
        print(f"nameorigin: {note}", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    if not args.names and not args.input:
        raise UsageError("give names to predict, or --input FILE (- for standard input)")
    if args.names and args.input:
        raise UsageError(
            f"names as arguments ('{escaped(args.names[0])}'...) and --input {args.input} together: "
            "give one or the other (add the names to the file, or run twice)"
        )
    if (args.first_column or args.last_column) and not args.input:
        raise UsageError("--first-column/--last-column name columns of --input FILE; give the file")
    if args.input and (args.workers or args.scheduler):
        from . import cluster

        if args.json or args.format not in (None, "parquet") or args.output_format not in (None, "parquet"):
            raise UsageError(
                "--workers/--scheduler read Parquet and write a folder of Parquet parts; leave out "
                "--json, --format and --output-format"
            )
        if args.prior == "auto":
            raise UsageError(
                "--prior auto: not on a cluster (each partition would estimate its own mix); "
                "estimate it with one process, save it as a JSON file of language weights and "
                "give --prior FILE"
            )
        labels = checkpoint.read_meta(args.model or default_model_path(), sha256=args.model_sha256)["labels"]
        prior = trust.resolve_prior(args.prior, labels)  # a bad --prior stops here, before any work
        options = _trust_options(args, None if prior is None else dict(zip(labels, prior.tolist(), strict=True)))
        options["name_type"] = args.name_type
        summary = cluster.predict_files(
            cluster.ClusterJob(
                input=args.input,
                output=args.output,
                column=args.column,
                top=args.top,
                model=args.model,
                keep_columns=args.keep_columns,
                workers=args.workers,
                scheduler=args.scheduler,
                precision=args.precision,
                trust=options,
                first_model=args.first_model,
                first_column=args.first_column,
                last_column=args.last_column,
            )
        )
        print(f"nameorigin: {summary.line()}", file=sys.stderr)
        return 0
    predictor = _load_pair(args)
    prior = trust.resolve_prior(args.prior, predictor.labels)  # a bad --prior stops here, before any output
    options = _trust_options(args, prior)
    if args.input:
        return _predict_input(args, predictor, prior, options)
    options["name_type"] = args.name_type
    results, used = _predict_names(predictor, args.names, args.top, options)
    distinct = prior_names(results) if isinstance(prior, str) and used else None
    if distinct is not None:
        _print_prior(
            used, f"estimated on these {distinct} distinct name(s) ({_em_note(len(predictor.labels), distinct)})"
        )
    bad = [p for p in results if p.error]
    if args.json:  # a list of results as ever; with --prior auto each also says what the estimate rested on
        extra = {} if distinct is None else {"prior_names": distinct}
        print(json.dumps([{**p.to_dict(), **extra} for p in results], indent=None))
    else:
        for p in results:
            if not p.error:
                print(_format_prediction(p))
    for p in bad:
        print(f"nameorigin: {p.error}", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else 0


def _load_pair(args: argparse.Namespace) -> Predictor:
    """``--model`` with ``--first-model`` (the bundled first-name model when there is one); ``--name-type first``
    without any first-name model is refused here, before any work."""
    predictor = Predictor.load(
        args.model,
        first=args.first_model,
        device=_device(args.device),
        precision=args.precision,
        sha256=args.model_sha256,
    )
    if getattr(args, "name_type", None) == "first" and predictor.first is None and predictor.name_kind != "first":
        raise UsageError(
            "--name-type first: no first-name model is available (this nameorigin ships none): give one with "
            "--first-model PATH (a checkpoint trained with name_kind first)"
        )
    return predictor


# ------------------------------------------------------------------------------------------- evaluate


def _print_names_report(report: dict) -> None:
    """``evaluate --name-type full``'s table: the combined answer's figures, then each part alone."""
    print(format_report(report))
    print(f"unanswered {report['unanswered']} (no readable part; counted wrong), skipped {report['skipped']}")
    for kind, figures in report["parts"].items():
        print(f"{kind} alone: accuracy {figures['accuracy']:.4f} ({figures['read']} names read)")
    if report.get("combination_note"):
        print(f"combination: {report['combination_note']}")
    elif report.get("combination"):
        w = report["combination"]["weights"]
        print(f"combination: weights surname {w['surname']:.3f}, first {w['first']:.3f}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    predictor = _load_pair(args)
    if args.name_type != "surname":
        if args.reliability or args.risk_coverage or args.plot or args.out_of_scope:
            raise UsageError(
                f"--name-type {args.name_type}: --plot, --reliability, --risk-coverage and --out-of-scope are "
                "for surnames (--name-type surname)"
            )
        report = api.evaluate(predictor, args.data, name_type=args.name_type)
        if args.json:
            print(json.dumps(report))
        else:
            _print_names_report(report)
        return 0
    result = api.evaluate(predictor, args.data, out_of_scope=args.out_of_scope, prior=args.prior)
    report, n = result.report, result.report["n"]
    where = f"{Path(args.data or 'the data').name} ({n} names"
    if args.reliability or args.risk_coverage or args.plot:
        from . import plots
    if args.reliability:
        before, after = result.reliability()
        plots.reliability_diagram(
            before, after, temperature=report["temperature"], path=args.reliability, title=f"Reliability on {where})"
        )
    if args.risk_coverage:
        plots.risk_coverage(result.risk_coverage(), path=args.risk_coverage, title=f"Risk-coverage on {where})")
    if args.plot:
        plots.confusion(
            result.confusion().numpy(),
            result.labels,
            path=args.plot,
            title=f"Confusion matrix on {where}; rows: true language)",
        )
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        trust_report = format_trust_report(report)
        if trust_report:
            print(trust_report)
    return 0


# ------------------------------------------------------------------------------------------- attention


def cmd_attention(args: argparse.Namespace) -> int:
    predictor = Predictor.load(args.model, sha256=args.model_sha256)
    if not predictor.has_attention:
        raise UsageError(
            f"{args.model or 'the bundled model'}: a {predictor.model.config.name} model has no "
            "attention; train one with --model gru-attention"
        )
    results = predictor.predict(args.names, top=1, attention=True, name_type="surname")
    bad = [r for r in results if r.error]
    good = [r for r in results if not r.error]
    for r in good:
        print(f"{r.name} -> {r.predictions[0]['language']} ({r.predictions[0]['probability']:.2f})")
        print("  " + "  ".join(f"{ch}:{w:.2f}" for ch, w in zip(r.folded, r.attention, strict=False)))
    if args.plot and good:
        from . import plots

        plots.attention_map(
            [r.folded for r in good],
            [r.attention for r in good],
            path=args.plot,
            title=f"Attention of {Path(args.model).name if args.model else 'the bundled model'}",
        )
    for r in bad:
        print(f"nameorigin: {r.error}", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else 0


# ------------------------------------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    api.compare(
        args.data,
        models,
        out=args.out,
        report=print,
        as_frame=False,
        noise=args.noise,
        seeds=args.seeds,
        worksheet=args.worksheet,
        epochs=args.epochs,
        iters=args.iters,
        hidden=args.hidden,
        prune=args.prune,
    )
    print(f"wrote {Path(args.out) / 'results.csv'}, results.md, loss curves and report.md")
    return 0


# ------------------------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    predictor = Predictor.load(args.model, first=args.first_model)
    info = model_info(predictor)
    if args.json:
        print(json.dumps(checkpoint.jsonable(info)))
        return 0
    _print_info(info)
    first = info.get("first_model")
    if first is None:
        print("first     no first-name model (give one with --first-model PATH): names are read as surnames")
        return 0
    print("\nfirst-name model")
    _print_info(first)
    c = info["combination"]
    how = c["note"] or f"fitted on {c['pairs']} validation pairs for this surname model"
    w = c["weights"]
    print(
        f"combine   weights surname {w['surname']:.3f}, first {w['first']:.3f}, "
        f"temperature {c['temperature']:.3f} ({how})"
    )
    return 0


#: ModelConfig fields that only some kinds of model read, and the fields a kind ignores: neither is shown.
_ONLY_FOR = {"heads": {"transformer"}, "ngram": {"ngram-lr"}, "edges": {"ngram-lr"}, "int8": {"ngram-lr"}}
_IGNORED_BY = {"ngram-lr": {"hidden", "layers", "vocab_limit"}}  # vocab, the size fitted, says what the limit did


def _model_summary(m: dict) -> str:
    """``name (sizes)``; a mixed ensemble: each member's, joined with ``+``."""
    if m.get("mix"):
        return "mixed: " + " + ".join(_model_summary(member) for member in m["mix"])
    kind = m["name"]
    sizes = ", ".join(
        f"{k} {v}" if v is not True else k
        for k, v in m.items()
        if k not in ("name", "mix")
        and v not in (None, [], False, 0)
        and not (k == "members" and v == 1)
        and kind in _ONLY_FOR.get(k, {kind})
        and k not in _IGNORED_BY.get(kind, ())
    )
    return f"{kind} ({sizes})" if sizes else kind


def _print_info(info: dict) -> None:
    m, t, f = info["model"], info["trust"], info["file"]
    print(
        f"model     {_model_summary(m)}; {info['parameters']:,} parameters"
        + ("; attention" if info["has_attention"] else "")
    )
    print(f"file      {f['path']}{' (bundled)' if f['bundled'] else ''}\nsha256    {f['sha256']}")
    print(f"languages {len(info['labels'])}: {', '.join(info['labels'])}")
    training = {k: v for k, v in info["training"].items() if v is not None}
    if training:
        print("training  " + ", ".join(f"{k} {v}" for k, v in training.items()))
    for split, figures in info["metrics"].items():
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        print(f"{split + ':':<9} {shown}")
    parts = [f"temperature {t['temperature']:.3f}"]
    if t["conformal"]:
        parts.append(f"{t['conformal']} prediction sets")
    if t["min_confidence"] is not None:
        parts.append(f"abstain below confidence {t['min_confidence']:.3f}")
    parts.append(
        f"out-of-scope detector, abstain above {t['max_out_of_scope']:.3f}"
        if t["out_of_scope_detector"]
        else "no out-of-scope detector"
    )
    print("trust     " + ", ".join(parts))


def cmd_combine(args: argparse.Namespace) -> int:
    """``nameorigin combine``: the combination's weights fitted on validation pairs, stored in ``--out``."""
    predictor = Predictor.load(args.model, first=args.first_model)
    pairs = fullname.read_pairs(args.pairs)
    block = fullname.fit_combination(predictor, pairs)
    if args.out != "-":
        check_output(args.out, [args.pairs])
    fullname.save_combination(args.first_model, block, args.out)
    if args.json:
        print(json.dumps(block))
    else:
        w, loss = block["weights"], block["valid_log_loss"]
        print(
            f"combination fitted on {block['pairs']} pairs: weights surname {w['surname']:.3f}, first "
            f"{w['first']:.3f}; validation log-loss {loss['weights_1']:.4f} at weights 1, {loss['fitted']:.4f} "
            f"fitted\nwritten to {args.out} (for the surname model {block['surname_sha256'][:12]}...)"
        )
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
            import errno

            if e.errno == errno.EADDRNOTAVAIL:  # the address is not this machine's: the host is at fault
                raise UsageError(
                    f"--host {host}: not an address of this machine ({e.strerror}); give one it has "
                    "(127.0.0.1, or 0.0.0.0 for every interface)"
                ) from None
            raise UsageError(
                f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); "
                "another server holds it? pick another --port"
            ) from None


def allowed_hosts(given: list[str] | None, host: str) -> list[str]:
    """``--allowed-hosts``, or by default the bound address and this machine's localhost names (and, bound to
    every interface, its host names)."""
    if given:
        return given
    import socket

    names = {"localhost", "127.0.0.1", "::1", "[::1]"}
    if host in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname(), socket.getfqdn()}
    else:
        names.add(host)
    return sorted(names)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import app_from_env, config_to_env, create_app, uvicorn_settings

    config = ServeConfig(
        model=args.model,
        precision=args.precision,
        batch_names=args.batch_names,
        batch_wait_ms=args.batch_wait_ms,
        queue_limit=args.queue_limit,
        max_body=args.max_body,
        threads=args.threads,
        allowed_hosts=allowed_hosts(args.allowed_hosts, args.host),
        api_docs=args.api_docs,
        model_sha256=args.model_sha256,
        first_model=args.first_model,
        limit_concurrency=args.limit_concurrency,
        request_timeout=args.request_timeout,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.load(
        args.model, first=args.first_model, precision=args.precision, sha256=args.model_sha256
    )  # load errors exit 2 before any port opens
    _check_port_free(args.host, args.port)
    ck = predictor.checkpoint
    print(
        f"nameorigin: serving {args.model or 'the bundled model'} ({_model_summary(ck.config.to_dict())}, "
        f"{args.precision}) at http://{args.host}:{args.port}/ with {args.workers} worker(s); "
        f"batches of up to {args.batch_names} names or {args.batch_wait_ms:g} ms",
        flush=True,
    )
    # keep-alive longer than a loaded server's slowest answer, so clients never reuse a connection it just closed
    common = dict(
        host=args.host,
        port=args.port,
        log_level="info" if args.verbose else "warning",
        access_log=args.verbose,
        **uvicorn_settings(config),
    )
    if args.workers == 1:
        uvicorn.run(create_app(predictor, config=config), **common)
    else:  # worker processes build their own app from the environment (uvicorn needs an import string)
        del predictor
        os.environ.update(config_to_env(config))
        uvicorn.run(f"{app_from_env.__module__}:{app_from_env.__name__}", factory=True, workers=args.workers, **common)
    return 0


# ------------------------------------------------------------------------------------------- presets


def cmd_presets(args: argparse.Namespace) -> int:
    for name, preset in PRESETS.items():
        settings = resolve_settings(name)
        print(f"{name}\n  {preset.description}\n  model: {asdict(settings.model)}")
        taught = [m for m in settings.members if m.teacher is not None]
        if settings.teacher is not None or taught:
            folds = (taught[0] if taught else settings).train.teacher_folds
            who = f" (of the {', '.join(m.model.name for m in taught)} member)" if taught else ""
            print(f"  teacher{who}: the {preset.teacher} preset, {folds} folds out of fold")
        print(
            f"  {'worksheet' if settings.worksheet else 'trainer'}: {asdict(settings.train)}"
            + (f", prune {settings.prune}" if settings.prune else "")
            + "\n"
        )
    return 0


# ------------------------------------------------------------------------------------------- parse


def cmd_parse(args: argparse.Namespace) -> int:
    """How each name splits into its parts; a name that cannot be read is an error line (exit 2 at the end)."""
    from . import names

    failed = 0
    for raw in args.names:
        p = names.parse(raw, name_type=args.name_type)
        if p.error:
            failed += 1
            print(f"nameorigin: error: {p.error}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(p.to_dict(), ensure_ascii=False))
            continue
        parts = [
            f"{label}: {' | '.join(values)}"
            for label, values in [
                ("title", p.title),
                ("given", p.given),
                ("initials", p.initials),
                ("family", p.family),
                ("suffix", p.suffix),
            ]
            if values
        ]
        print(f"{raw}\n  {p.name_type}, {p.order}: {'; '.join(parts)}\n  why: {'; '.join(p.why)}")
    return EXIT_BAD_INPUT if failed else 0


# ------------------------------------------------------------------------------------------- split


def cmd_split(args: argparse.Namespace) -> int:
    fractions = data.parse_split(args.split)
    parts = api.split_names(api.training_names(args.data), fractions, seed=args.seed)
    out = Path(args.out)
    for part_name, part in [("train", parts.train), ("valid", parts.valid), ("test", parts.test)]:
        if not part:
            continue
        with atomic_output(str(out / f"{part_name}.tsv")) as fh:
            fh.write("name\tlanguage\n")
            fh.writelines(f"{name}\t{lang}\n" for name, lang in part)
        print(f"{out / (part_name + '.tsv')}: {len(part)} names, {len({n for n, _ in part})} distinct")
    return 0


# ------------------------------------------------------------------------------------------- corpus


def cmd_corpus(args: argparse.Namespace) -> int:
    from . import corpus

    config = corpus.CorpusConfig(kind=args.kind, per_language=args.per_language)
    mapping = corpus.load_map(args.map)
    exclude = corpus.read_exclude(args.exclude or [])
    if args.source:
        records, source = corpus.from_table(args.source), args.source
    else:
        records, source = corpus.from_names_dataset(args.kind), "names-dataset"
    table, stats = corpus.build(records, mapping=mapping, config=config, exclude=exclude)
    if not table.num_rows:
        raise UsageError(f"{source}: no name could be labelled (check the map and the table's countries)")
    corpus.write(
        table,
        args.out,
        meta=corpus.meta_of(source=source, mapping=mapping, map_path=args.map, config=config, stats=stats),
    )
    print(
        f"{args.out}: {table.num_rows} names from {source} ({stats.source_names} read): {stats.in_scope} in "
        f"scope, {stats.out_of_scope} out of scope"
    )
    print("  per language: " + ", ".join(f"{lang} {stats.by_language.get(lang, 0)}" for lang in corpus.LANGUAGES))
    print(
        f"  read by the readers: {stats.han_read} Han/kana names ({stats.han_japanese} Japanese reading, "
        f"{stats.han_chinese} Chinese, {stats.han_both} both), {stats.hangul_read} Hangul names (Korean reader)"
    )
    print(
        f"  left out: {stats.han} Han-character names (neither population, or no reader), "
        f"{stats.hangul_not_surname} Hangul words that are not {corpus.KIND_WORDS[args.kind]}, "
        f"{stats.unreadable} unreadable, "
        f"{stats.excluded} excluded, "
        f"{stats.only_mixed + stats.mostly_mixed} mostly in mixed countries, {stats.capped} over the cap"
    )
    if stats.syllable_cut:
        cut = ", ".join(f"{n} of {lang}" for lang, n in sorted(stats.syllable_cut.items()))
        print(
            f"  syllable rule: Latin names without the syllables of a language's romanizations lost its share: "
            f"{cut} ({stats.syllable_gone} of them had no other country)"
        )
    print(
        f"  held out (never trained on): {stats.held_out} names, {stats.held_out_labelled} scored (top language "
        f">= {config.label_share}), {stats.held_out_unlabelled} not scored"
    )
    if args.benchmark:
        n = corpus.write_benchmark(corpus.read(args.out), args.benchmark)
        print(f"{args.benchmark}: {n} held-out names with their top language (for `nameorigin evaluate --data`)")
    if args.out_of_scope_benchmark:
        n = corpus.write_out_of_scope_benchmark(corpus.read(args.out), args.out_of_scope_benchmark)
        print(
            f"{args.out_of_scope_benchmark}: {n} out-of-scope names of {', '.join(corpus.OOS_HELD_OUT_COUNTRIES)}, "
            "never fitted on (for `nameorigin evaluate --out-of-scope`)"
        )
    return 0


# ------------------------------------------------------------------------------------------- parser


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, where it has one and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and "default" not in text
            and (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nameorigin", description="Which language does a name come from?", formatter_class=HelpFormatter
    )
    p.add_argument("--version", action="version", version=f"nameorigin {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    # every command's help shows its defaults
    sub = p.add_subparsers(
        dest="command",
        required=True,
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=HelpFormatter),
    )

    t = sub.add_parser("train", help="train a model on labelled names")
    t.add_argument(
        "--data",
        help="folder of <Language>.txt files or CSV/TSV of name,label "
        "(default: $NAMEORIGIN_DATA, else the tutorial's archive)",
    )
    t.add_argument(
        "--preset",
        help=f"named configuration: {', '.join(PRESETS)} (see `nameorigin presets`); "
        "flags given beside it override it. Without one: default, or bare "
        "settings with --worksheet",
    )
    t.add_argument("--model", help=f"one of: {', '.join(REGISTRY)}")
    t.add_argument("--hidden", type=ranged("--hidden"), help="hidden size")
    t.add_argument("--layers", type=ranged("--layers"), help="stacked recurrent layers")
    t.add_argument("--bidirectional", action="store_const", const=True, help="add a backward direction")
    t.add_argument("--embed", type=ranged("--embed"), help="learned embedding size; 0: the seeds' one-hot input")
    t.add_argument("--dropout", type=ranged("--dropout"), help="dropout before the output layer and between layers")
    t.add_argument(
        "--members",
        type=ranged("--members"),
        help="train N models from seeds SEED..SEED+N-1 and average their probabilities (an ensemble in one checkpoint)",
    )
    t.add_argument(
        "--compact",
        action="store_const",
        const=True,
        help="hold and store the network at float16 (ngram-lr: its weights and idf): a file half the size, trained "
        "and fitted at the precision it is stored in (a mixed preset sets its members' own)",
    )
    t.add_argument(
        "--heads",
        type=ranged("--heads"),
        help=f"transformer: attention heads; hidden must be a multiple ({ModelConfig.heads})",
    )
    t.add_argument(
        "--teacher",
        help="distil: a checkpoint whose probabilities teach this model beside the labels "
        "(default: none; the bundled preset trains its own teachers)",
    )
    t.add_argument(
        "--teacher-folds",
        type=ranged("--teacher-folds"),
        help=f"with --teacher: 0 uses its own probabilities on the training names; K >= 2 trains its "
        f"recipe on K folds, each predicting the fold it did not see ({TrainConfig.teacher_folds})",
    )
    t.add_argument(
        "--distill-weight",
        type=ranged("--distill-weight"),
        help=f"share of the teacher's loss in the total, 0 to 1 ({TrainConfig.distill_weight})",
    )
    t.add_argument(
        "--distill-temperature",
        type=ranged("--distill-temperature"),
        help=f"softens teacher and student before comparing them ({TrainConfig.distill_temperature})",
    )
    t.add_argument(
        "--corpus",
        metavar="FILE.parquet",
        help="also learn from a corpus of real surnames with soft labels (`nameorigin corpus`); batched trainer only",
    )
    t.add_argument(
        "--kind",
        dest="name_kind",
        choices=["surname", "first"],
        help="which names the model reads: surnames (the labelled data, and --corpus beside it) or first names "
        f"(a first-name corpus, --corpus, alone: its scored validation names validate) ({TrainConfig.name_kind})",
    )
    t.add_argument(
        "--corpus-mode",
        choices=["joint", "pretrain"],
        help=f"with --corpus: joint (both sources every epoch) or pretrain (the corpus first, then the "
        f"labelled names) ({TrainConfig.corpus_mode})",
    )
    t.add_argument(
        "--corpus-weight",
        type=ranged("--corpus-weight"),
        help=f"joint: loss weight of a corpus name against a labelled name's 1 ({TrainConfig.corpus_weight})",
    )
    t.add_argument(
        "--corpus-per-language",
        type=ranged("--corpus-per-language"),
        metavar="N",
        help="with --corpus: train on at most N of its training names a language, its most frequent (every "
        "member of a mixed preset; the bundled preset's network takes 8000 of a larger corpus, its n-gram member "
        f"all) ({TrainConfig.corpus_per_language}: all)",
    )
    t.add_argument(
        "--corpus-prior",
        choices=["own", "shared"],
        help="joint: own (a corpus name is scored under the corpus's language mix, so the model keeps the "
        "labelled data's mix) or shared (both sources under one mix) "
        f"({TrainConfig.corpus_prior})",
    )
    t.add_argument(
        "--pretrain-epochs",
        type=ranged("--pretrain-epochs"),
        help=f"pretrain: epochs on the corpus alone ({TrainConfig.pretrain_epochs})",
    )
    t.add_argument(
        "--exclude",
        nargs="+",
        metavar="FILE",
        help="names never to train on, in the labelled data and the corpus (any file predict --input reads)",
    )
    t.add_argument(
        "--out", default="model.safetensors", help="checkpoint to write (missing parent folders are created)"
    )
    t.add_argument("--split", default="0.8,0.1,0.1", help="TRAIN,VALID,TEST fractions of distinct names")
    t.add_argument("--split-seed", type=ranged("--split-seed"), default=0, help="seed of the leak-free split")
    t.add_argument("--prune", type=ranged("--prune"), help="keep at most N training names a language (seed 000: 50)")
    t.add_argument("--seed", type=ranged("--seed"), help="seed of initial weights, sampling and noise")
    t.add_argument("--noise", type=ranged("--noise"), help="the worksheet's punctuation noise level")
    t.add_argument(
        "--lr", type=ranged("--lr"), help=f"learning rate ({TrainConfig.lr}; worksheet {WorksheetConfig.lr})"
    )
    t.add_argument("--epochs", type=ranged("--epochs"), help=f"most epochs ({TrainConfig.epochs})")
    t.add_argument("--batch-size", type=ranged("--batch-size"), help=f"names a batch ({TrainConfig.batch_size})")
    t.add_argument("--optimizer", choices=["adam", "sgd"], help=f"optimizer ({TrainConfig.optimizer})")
    t.add_argument("--sampling", choices=["natural", "balanced"], help="balanced: each language equally often")
    t.add_argument("--clip", type=ranged("--clip"), help=f"gradient-norm clipping, 0 off ({TrainConfig.clip})")
    t.add_argument(
        "--patience",
        type=ranged("--patience"),
        help=f"early stop after N epochs without progress ({TrainConfig.patience})",
    )
    t.add_argument(
        "--select", choices=["macro_f1", "accuracy", "loss"], help="validation figure picking the best epoch"
    )
    t.add_argument(
        "--weight-decay", type=ranged("--weight-decay"), help=f"L2 weight decay ({TrainConfig.weight_decay})"
    )
    t.add_argument(
        "--label-smoothing",
        type=ranged("--label-smoothing"),
        help=f"label smoothing of the loss, 0 to below 1 ({TrainConfig.label_smoothing})",
    )
    t.add_argument(
        "--class-weight",
        type=ranged("--class-weight"),
        help="loss weight of each language: (N / (C n_c)) ** POWER; 0 none, 0.5 sqrt, 1 balanced",
    )
    t.add_argument("--schedule", choices=["constant", "cosine", "plateau"], help="learning-rate schedule")
    t.add_argument("--worksheet", action="store_const", const=True, help="the seeds' one-name-at-a-time loop")
    t.add_argument("--iters", type=ranged("--iters"), help=f"worksheet steps ({WorksheetConfig.iters})")
    t.add_argument(
        "--print-every",
        type=ranged("--print-every"),
        help=f"worksheet: a line every N steps ({WorksheetConfig.print_every})",
    )
    t.add_argument(
        "--plot-every",
        type=ranged("--plot-every"),
        help=f"worksheet: a loss average every N steps ({WorksheetConfig.plot_every})",
    )
    t.add_argument("--plot", help="save the run's loss curve as PNG")
    t.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_threads(t)
    t.add_argument(
        "--nproc",
        type=ranged("--nproc"),
        default=1,
        help="train in N processes with DistributedDataParallel, launched by torchrun (gloo on the "
        "CPU, NCCL on CUDA; each process takes 1/N of every epoch's batches) (default: %(default)s)",
    )
    t.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="rank languages for names")
    pr.add_argument("names", nargs="*", help="names to predict (or use --input)")
    pr.add_argument("--model", help="checkpoint (default: the bundled model)")
    add_model_sha256(pr)
    add_first_model(pr)
    add_name_type(pr)
    pr.add_argument("--first-column", help="--input: the column of first names (header name or 0-based index)")
    pr.add_argument("--last-column", help="--input: the column of last names (header name or 0-based index)")
    pr.add_argument("--top", type=ranged("--top"), default=3, help="languages a name (default: 3)")
    pr.add_argument(
        "--json",
        action="store_true",
        help="JSON: one list for names given as arguments, one line "
        "{line, name, predictions, error} a name for --input (default: off)",
    )
    pr.add_argument(
        "--input",
        help="file of names: .txt (one a line), .csv, .tsv, .jsonl or .parquet (by extension; "
        "see --format); with --workers/--scheduler a glob of Parquet files or any "
        "fsspec path",
    )
    pr.add_argument(
        "--column",
        help="column holding the names: header name or 0-based index (default: the column "
        "headed name/surname/..., else the first)",
    )
    pr.add_argument(
        "--output",
        help="write here, atomically, in the format of its extension (default: CSV, or JSON "
        "lines with --json, on stdout); with --workers/--scheduler a folder of parts",
    )
    pr.add_argument(
        "--format", choices=sorted(set(frame.FORMATS.values())), help="format of --input (default: from its extension)"
    )
    pr.add_argument(
        "--output-format",
        choices=sorted(set(frame.FORMATS.values())),
        help="format of --output (default: from its extension; CSV on stdout)",
    )
    pr.add_argument(
        "--keep-columns",
        action="store_true",
        help="keep the input's other columns in the output (default: line number and name only)",
    )
    pr.add_argument(
        "--keep-formulas",
        action="store_true",
        help="CSV/TSV output: write cells that begin with =, +, -, @, tab or CR as they are (by default "
        "they get a leading ' so that a spreadsheet shows them instead of running them)",
    )
    pr.add_argument(
        "--workers",
        type=ranged("--workers"),
        help="run on a local Dask cluster of N worker processes (needs the cluster extra; default: "
        "one process, no Dask)",
    )
    pr.add_argument(
        "--scheduler", help="run on an existing Dask cluster at this address, e.g. tcp://HOST:8786 (default: none)"
    )
    pr.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_threads(pr)
    pr.add_argument("--quiet", action="store_true", help="no progress bar and no summary line on stderr")
    pr.add_argument(
        "--coverage",
        type=ranged("--coverage"),
        help="give each name the conformal set of languages that holds the true one with this "
        "probability, e.g. 0.9 (default: no sets)",
    )
    pr.add_argument(
        "--prior",
        help="the language mix of your names: uniform, auto (estimated on the input by EM, printed to stderr), "
        "training (the training data's mix) or a JSON/CSV file of language,weight (default: the model's default "
        "mix, which `nameorigin info` shows)",
    )
    pr.add_argument(
        "--min-confidence",
        type=ranged("--min-confidence"),
        help="abstain (low-confidence) below this top probability (default: the checkpoint's, chosen on validation)",
    )
    pr.add_argument(
        "--max-out-of-scope",
        type=ranged("--max-out-of-scope"),
        help="abstain (out-of-scope) above this out-of-scope score (default: the checkpoint's, chosen on validation)",
    )
    add_precision(pr)
    pr.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", help="accuracy, macro-F1 and per-language figures on labelled names")
    e.add_argument("--model", help="checkpoint (default: the bundled model)")
    add_model_sha256(e)
    add_first_model(e)
    add_name_type(e, "surname")
    e.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    e.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    e.add_argument("--plot", help="save the row-normalised confusion matrix as PNG")
    e.add_argument("--reliability", help="save a reliability diagram (before and after temperature scaling) as PNG")
    e.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_threads(e)
    e.add_argument("--risk-coverage", help="save a risk-coverage curve as PNG (default: none)")
    e.add_argument(
        "--out-of-scope",
        help="names of other languages (any input predict --input reads): report the "
        "out-of-scope AUROC and abstention rates against the evaluated names "
        "(default: none)",
    )
    e.add_argument(
        "--prior",
        help="score the predictions under this language mix: uniform, auto (estimated on the evaluated names by "
        "EM), training (the training data's) or a JSON/CSV file of language,weight (default: the model's default "
        "mix, which `nameorigin info` shows)",
    )
    add_precision(e)
    e.set_defaults(func=cmd_evaluate)
    a = sub.add_parser(
        "attention",
        help="each character's weight in the model's attention pooling (gru-attention "
        "and transformer models, and ensembles of them)",
    )
    a.add_argument("names", nargs="+", help="names to show")
    a.add_argument("--model", help="checkpoint of a model with attention pooling (default: the bundled model)")
    add_model_sha256(a)
    a.add_argument("--plot", help="save a heat map as PNG")
    a.set_defaults(func=cmd_attention)

    c = sub.add_parser("compare", help="the worksheet's experiments: models x noise x seeds, tables, curves, report")
    c.add_argument(
        "--models",
        default="rnn,gru,gru-attention,baseline",
        help=f"comma-separated: {', '.join(REGISTRY)}, {experiments.BASELINE} (needs scikit-learn)",
    )
    c.add_argument("--noise", type=ListOf(ranged("--noise")), default="0,5", help="noise levels, comma-separated")
    c.add_argument("--seeds", type=ranged("--seeds"), default=1, help="seeds per model and noise level")
    c.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    c.add_argument(
        "--out",
        required=True,
        help="folder for results.csv, results.md, loss_noise*.png, report.md (created if missing)",
    )
    c.add_argument(
        "--epochs", type=ranged("--epochs"), default=experiments.CompareConfig.epochs, help="batched trainer's epochs"
    )
    c.add_argument("--worksheet", action="store_true", help="train with the seeds' one-name loop")
    c.add_argument(
        "--iters", type=ranged("--iters"), default=experiments.CompareConfig.iters, help="worksheet loop steps"
    )
    c.add_argument(
        "--hidden",
        type=ranged("--hidden"),
        help="hidden size (default: 32 with --worksheet, else the default preset's)",
    )
    c.add_argument(
        "--prune",
        type=ranged("--prune"),
        default=experiments.CompareConfig.prune,
        help="worksheet loop: names a language, as seed 000",
    )
    add_threads(c)
    c.set_defaults(func=cmd_compare)

    sv = sub.add_parser("serve", help="the HTTP API and web page")
    sv.add_argument("--model", help="checkpoint (default: the bundled model)")
    add_first_model(sv)
    add_model_sha256(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=ranged("--port"), default=8000, help="port to listen on")
    sv.add_argument(
        "--threads",
        type=ranged("--threads"),
        default=ServeConfig.threads,
        help="torch threads for inference (default: %(default)s; requests are small and more threads "
        "spin against the HTTP work)",
    )
    sv.add_argument(
        "--workers",
        type=ranged("--workers"),
        default=1,
        help="server processes, each with its own model (default: %(default)s)",
    )
    sv.add_argument(
        "--batch-names",
        type=ranged("--batch-names"),
        default=ServeConfig.batch_names,
        help="a batch of concurrent requests closes at this many names (default: %(default)s; "
        "1 with --batch-wait-ms 0 turns batching off)",
    )
    sv.add_argument(
        "--batch-wait-ms",
        type=ranged("--batch-wait-ms"),
        default=ServeConfig.batch_wait_ms,
        help="...or this many milliseconds after its first request (default: %(default)s)",
    )
    sv.add_argument(
        "--queue-limit",
        type=ranged("--queue-limit"),
        default=ServeConfig.queue_limit,
        help="names waiting for the model above which requests get 503 with Retry-After (default: %(default)s)",
    )
    sv.add_argument(
        "--max-body",
        type=ranged("--max-body"),
        default=ServeConfig.max_body,
        help="largest request body in bytes; larger ones get 413 unread (default: %(default)s)",
    )
    sv.add_argument(
        "--allowed-hosts",
        type=host_list,
        metavar="HOST,...",
        help="Host headers answered, comma-separated (*.example.org for subdomains; * for any); others "
        "get 400, which stops DNS rebinding (default: the --host address and localhost names)",
    )
    sv.add_argument(
        "--api-docs",
        action="store_true",
        help="serve the /docs and /redoc pages (off by default: they load Swagger UI and ReDoc from a "
        "CDN); /openapi.json is always served",
    )
    sv.add_argument(
        "--limit-concurrency",
        type=ranged("--limit-concurrency"),
        default=ServeConfig.limit_concurrency,
        help="connections at once; above it new ones get 503 (default: %(default)s)",
    )
    sv.add_argument(
        "--request-timeout",
        type=ranged("--request-timeout"),
        default=ServeConfig.request_timeout,
        help="seconds a request's headers and body may take to arrive before the connection is closed "
        "(default: %(default)s)",
    )
    add_precision(sv)
    sv.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="access log and info logging (also accepted before the command)",
    )
    sv.set_defaults(func=cmd_serve)

    inf = sub.add_parser(
        "info", help="what a model is: languages, held-out figures, trust layer, file digest (as GET /api/model)"
    )
    inf.add_argument("--model", help="checkpoint (default: the bundled model)")
    add_first_model(inf)
    inf.add_argument("--json", action="store_true", help="print it as one JSON document, as /api/model answers")
    inf.set_defaults(func=cmd_info)

    cb = sub.add_parser(
        "combine",
        help="fit how a surname model and a first-name model combine, on validation full names, and store "
        "the weights in a copy of the first-name model",
    )
    cb.add_argument("--model", help="surname checkpoint (default: the bundled model)")
    cb.add_argument("--first-model", required=True, help="first-name checkpoint (name_kind first)")
    cb.add_argument(
        "--pairs",
        required=True,
        help="validation names with their language: CSV/TSV of name,language (a full name) or "
        "first,last,language, or a folder of <Language>.txt files of full names; never names the models "
        "trained on",
    )
    cb.add_argument("--out", required=True, help="the first-name checkpoint with the fitted combination")
    cb.add_argument("--json", action="store_true", help="print the fitted block as one JSON document")
    cb.set_defaults(func=cmd_combine)

    ps = sub.add_parser("presets", help="list the named training configurations")
    ps.set_defaults(func=cmd_presets)

    pa_ = sub.add_parser("parse", help="show how full names split into given and family names")
    pa_.add_argument("names", nargs="+", metavar="NAME", help="names to parse (quote a full name)")
    pa_.add_argument(
        "--name-type",
        choices=["auto", "surname", "first", "full"],
        default="auto",
        help="the kind of name: auto decides from the parse (default)",
    )
    pa_.add_argument("--json", action="store_true", help="one JSON object a line")
    pa_.set_defaults(func=cmd_parse)

    sp = sub.add_parser("split", help="write a leak-free, stratified split of labelled names as TSV files")
    sp.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    sp.add_argument("--split", default="0.8,0,0.2", help="TRAIN,VALID,TEST fractions of distinct names")
    sp.add_argument("--seed", type=ranged("--seed"), default=0, help="seed of the split")
    sp.add_argument("--out", required=True, help="folder for train.tsv, valid.tsv, test.tsv (created if missing)")
    sp.set_defaults(func=cmd_split)

    co = sub.add_parser(
        "corpus", help="build a weakly labelled corpus of real surnames or first names (names-dataset or a table)"
    )
    co.add_argument("--out", required=True, help="the corpus file to write (Parquet)")
    co.add_argument(
        "--kind", default="surname", choices=["surname", "first"], help="which names: surnames or first names"
    )
    co.add_argument(
        "--source",
        metavar="TABLE",
        help="a CSV/TSV/Parquet table of name, country and count or share "
        "(default: the names-dataset package, extra [corpus])",
    )
    co.add_argument(
        "--map",
        metavar="FILE",
        help="country -> language rows (COUNTRY<TAB>TARGET[<TAB>WEIGHT]) over the shipped table",
    )
    co.add_argument(
        "--per-language",
        type=ranged("--per-language"),
        metavar="N",
        help="at most N names a language (and an out-of-scope country), the most frequent",
    )
    co.add_argument(
        "--exclude",
        nargs="+",
        metavar="FILE",
        help="names never to include (any file predict --input reads; compared folded, without case)",
    )
    co.add_argument(
        "--benchmark", metavar="FILE.tsv", help="also write the held-out real names with their language, for evaluate"
    )
    co.add_argument(
        "--out-of-scope-benchmark",
        metavar="FILE.txt",
        help="also write the out-of-scope names of the "
        "countries held out from fitting the "
        "detector, for evaluate --out-of-scope",
    )
    co.set_defaults(func=cmd_corpus)
    return p


def main(argv: list[str] | None = None) -> int:
    code = _run(argv)
    frame = sys.modules.get("nameorigin.frame")
    if argv is None and frame is not None and frame.failed_readers:
        # the program (not a call from Python) ends after an input file failed to parse: Arrow's read-ahead
        # thread of that reader may still be inside the Python file object, and the interpreter's exit would
        # then abort the process (-6) after the error was printed; everything is written or undone by now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


#: Each command's input paths and the paths it writes (by their arguments' names): no output may be an input,
#: nor another of the command's outputs, which the write would replace (``train --out`` its own ``--data``,
#: ``evaluate --plot`` the model). ``split`` writes train.tsv, valid.tsv and test.tsv into ``--out``.
_FILES = {
    "cmd_train": (("data", "teacher", "corpus", "exclude"), ("out", "plot")),
    "cmd_predict": (("model", "first_model", "prior"), ("output",)),  # --input: cmd_predict says it (the docs)
    "cmd_evaluate": (
        ("model", "first_model", "data", "out_of_scope", "prior"),
        ("plot", "reliability", "risk_coverage"),
    ),
    "cmd_attention": (("model",), ("plot",)),
    "cmd_combine": (("model", "first_model", "pairs"), ("out",)),
    "cmd_corpus": (("source", "map", "exclude"), ("out", "benchmark", "out_of_scope_benchmark")),
    "cmd_split": (("data",), ()),
}


def _paths(value) -> list[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [str(v) for v in values if isinstance(v, (str, os.PathLike)) and str(v) not in ("", "-")]


def refuse_overwrites(args) -> None:
    """:class:`OutputError` before any work when one of a command's outputs (:data:`_FILES`) is one of its inputs
    or another of its outputs: the write would replace it."""
    ins, outs = _FILES.get(getattr(args.func, "__name__", ""), ((), ()))
    flag = {dest: "--" + dest.replace("_", "-") for dest in (*ins, *outs)}
    inputs = [(flag[d], p) for d in ins for p in _paths(getattr(args, d, None))]
    if "model" in ins and getattr(args, "model", None) is None:  # the bundled model is read: never written over
        from .predict import default_model_path

        inputs.append(("--model (the bundled model)", str(default_model_path())))
    outputs = [(flag[d], p) for d in outs for p in _paths(getattr(args, d, None))]
    if args.func.__name__ == "cmd_split" and getattr(args, "out", None):
        outputs = [("--out", os.path.join(args.out, f"{part}.tsv")) for part in ("train", "valid", "test")]
    for i, (out_flag, out) in enumerate(outputs):
        for in_flag, source in inputs + outputs[:i]:
            if same_file(out, source):
                raise OutputError(
                    f"{out_flag} {out}: is {in_flag} {source}; writing it would replace that file, choose another "
                    "output"
                )


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc relaunches the same command
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="nameorigin: %(message)s")
    if getattr(args, "threads", None) and args.func is not cmd_serve:  # serve sets its model thread's
        set_threads(args.threads)
    # SIGTERM as SIGINT: the write in progress is undone (serve leaves signals to uvicorn)
    terminate = args.func is not cmd_serve and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if terminate else None
    try:
        refuse_overwrites(args)
        return args.func(args)
    except InputError as e:  # the library names its parameter; say it as this command's flag
        print(f"nameorigin: error: {e.named(flag_of(e.param)) if e.param else e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CheckpointError, BadName, UnknownModel, UnknownPreset, UsageError, PrecisionError, OutputError) as e:
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
