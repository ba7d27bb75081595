"""The ``nameorigin`` command: it parses and calls the modules; it holds no logic of its own."""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import __version__, checkpoint, data, experiments, frame, plots
from .checkpoint import CheckpointError
from .evaluation import (confusion_matrix, expected_calibration_error, fit_temperature, format_report, metrics,
                         reliability)
from .models import REGISTRY, UnknownModel, batched_log_probs
from .predict import Predictor
from .text import BadName
from .training import PRESETS, TrainConfig, UnknownPreset, WorksheetConfig, fit, resolve_settings, validate

log = logging.getLogger("nameorigin")
EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    pass


# ------------------------------------------------------------------------------------------- helpers

@contextmanager
def atomic_output(path: str | None):
    """Yield a text stream: stdout, or a file written beside ``path`` and renamed onto it only when all went
    well (:func:`nameorigin.frame.atomic_file`)."""
    if not path or path == "-":
        yield sys.stdout
        return
    with frame.atomic_file(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        yield text
        text.flush()
        text.detach()


def _device(name: str) -> torch.device:
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available to this torch build")
        index = int(name[5:] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def _load_labelled(path: str | None) -> list[data.Pair]:
    return data.dedupe(data.read_labelled(data.resolve_data(path)))


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
    "--patience": NATURAL, "--threads": NATURAL,
    "--lr": Range(float, 0, low_open=True), "--clip": Range(float, 0), "--weight-decay": Range(float, 0),
    "--dropout": FRACTION, "--label-smoothing": FRACTION, "--class-weight": Range(float, 0, 1),
    "--port": Range(int, 1, 65535), "--workers": COUNT,
}


def ranged(flag: str) -> Range:
    """The argparse ``type`` of a numeric flag, from :data:`RANGES`."""
    return RANGES[flag]


def device_name(text: str) -> str:
    """argparse type of ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (whether CUDA is there is checked on use)."""
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------------------- train

MODEL_FLAGS = ("model", "hidden", "layers", "bidirectional", "embed", "dropout", "members")
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "optimizer", "sampling", "clip", "patience", "select", "noise",
               "weight_decay", "label_smoothing", "class_weight", "schedule", "seed", "iters", "print_every",
               "plot_every")


def cmd_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = {k: getattr(args, k) for k in MODEL_FLAGS + TRAIN_FLAGS if getattr(args, k) is not None}
    model_values = {("name" if k == "model" else k): chosen[k] for k in MODEL_FLAGS if k in chosen}
    settings = resolve_settings(args.preset, worksheet=args.worksheet, model=model_values,
                                train={k: chosen[k] for k in TRAIN_FLAGS if k in chosen}, prune=args.prune)
    config, train_config = settings.model, settings.train
    if settings.worksheet and config.members > 1:
        raise UsageError("--members: an ensemble trains with the batched trainer, not --worksheet")
    pairs = _load_labelled(args.data)
    fractions = data.parse_split(args.split)
    parts = data.split(pairs, fractions, seed=args.split_seed)
    labels = data.languages(pairs)
    if not parts.train:
        raise data.DataError(f"{args.data or 'the data'}: the split leaves no training names")
    device = _device(args.device)
    valid = data.encode_pairs(parts.valid, labels) if parts.valid else None
    test = data.encode_pairs(parts.test, labels) if parts.test else None
    model, history, train_pairs = fit(settings, parts.train, valid, labels, device=device,
                                      printer=None if args.json else print,
                                      progress=not args.json and not args.quiet)
    if settings.worksheet and valid is not None:
        history.best = {k: v for k, v in validate(model, valid, labels).items() if k != "per_language"}
    calibration = None
    if valid is not None:  # temperature scaling, fitted on validation names only
        lp, _ = batched_log_probs(model, valid.tokens, valid.lengths)
        temperature = fit_temperature(lp, valid.labels)
        calibration = {"temperature": temperature,
                       "valid_ece_before": expected_calibration_error(lp.softmax(1), valid.labels),
                       "valid_ece_after": expected_calibration_error((lp / temperature).softmax(1), valid.labels)}
    test_metrics = validate(model, test, labels) if test is not None else None
    meta = {
        "training": {"mode": "worksheet" if settings.worksheet else "batched", "preset": args.preset,
                     **asdict(train_config), "split": list(fractions), "split_seed": args.split_seed,
                     "prune": settings.prune,
                     "n_train": len(train_pairs), "n_valid": len(parts.valid), "n_test": len(parts.test)},
        "data_fingerprint": data.fingerprint(train_pairs),
        "temperature": calibration["temperature"] if calibration else 1.0,
        "calibration": calibration,
        "metrics": {"valid": history.best or None,
                    "test": test_metrics},
        "history": {"loss_steps": history.loss_steps, "losses": [round(x, 5) for x in history.losses],
                    "epochs": history.epochs, "best_epoch": history.best_epoch,
                    "train_seconds": history.train_seconds, "names_seen": history.names_seen},
    }
    out = checkpoint.save(args.out, model, labels, meta)
    if args.plot:
        per = "Iterations" if settings.worksheet else "Steps"
        plots.loss_curve(history.loss_steps, history.losses, xlabel=per, path=args.plot,
                         title=f"Training loss: {config.name}, noise {train_config.noise}")
    summary = {
        "model": config.name, "out": str(out), "train_seconds": round(history.train_seconds, 3),
        "names_seen": history.names_seen, "names_per_second": round(history.names_per_second, 1),
        "best_epoch": history.best_epoch, "final_loss": history.final_loss,
        "accuracy": history.best.get("accuracy"), "macro_f1": history.best.get("macro_f1"),
        "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
        "test_macro_f1": test_metrics["macro_f1"] if test_metrics else None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained {config.name} on {len(train_pairs)} names in {history.train_seconds:.1f}s "
              f"({history.names_per_second:,.0f} names/s); saved {out}")
        if history.best:
            print(f"validation ({len(parts.valid)} names): accuracy {history.best['accuracy']:.4f}, "
                  f"macro-F1 {history.best['macro_f1']:.4f}" +
                  (f" (best epoch {history.best_epoch})" if history.best_epoch else ""))
        if test_metrics:
            print(f"test ({len(parts.test)} held-out names): accuracy {test_metrics['accuracy']:.4f}, "
                  f"macro-F1 {test_metrics['macro_f1']:.4f}")
    return 0


# ------------------------------------------------------------------------------------------- predict

def _format_prediction(p) -> str:
    cells = "   ".join(f"{x['language']:<11} {x['probability'] * 100:5.1f}%" for x in p.predictions)
    return f"{p.name:<16} {cells}"


def _progress_bar():
    """A names/s progress bar on stderr when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(unit=" names", unit_scale=True, file=sys.stderr, leave=False)


def cmd_predict(args: argparse.Namespace) -> int:
    if not args.names and not args.input:
        raise UsageError("give names to predict, or --input FILE")
    if args.input and (args.workers or args.scheduler):
        from . import cluster
        if args.json or args.format not in (None, "parquet") or args.output_format not in (None, "parquet"):
            raise UsageError("--workers/--scheduler read Parquet and write a folder of Parquet parts; leave out "
                             "--json, --format and --output-format")
        summary = cluster.predict_files(cluster.ClusterJob(
            input=args.input, output=args.output, column=args.column, top=args.top, model=args.model,
            keep_columns=args.keep_columns, workers=args.workers, scheduler=args.scheduler))
        print(f"nameorigin: {summary.line()}", file=sys.stderr)
        return 0
    predictor = Predictor.load(args.model, device=_device(args.device))
    if args.input:
        job = frame.FileJob(input=args.input, output=args.output, column=args.column, top=args.top,
                            keep_columns=args.keep_columns, input_format=args.format,
                            output_format="json" if args.json else args.output_format)
        bar = _progress_bar()
        try:
            summary = frame.predict_file(predictor, job, progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()
        print(f"nameorigin: {summary.line()}", file=sys.stderr)
        return 0
    results = predictor.predict(args.names, args.top)
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
    predictor = Predictor.load(args.model, device=_device(args.device))
    pairs = _load_labelled(args.data)
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
    if args.plot:
        cm = confusion_matrix(encoded.labels, lp.argmax(1), len(predictor.labels))
        plots.confusion(cm.numpy(), predictor.labels, path=args.plot,
                        title=f"Confusion matrix on {Path(args.data or 'the data').name} ({len(pairs)} names; "
                              "rows: true language)")
    if args.json:
        print(json.dumps(result))
    else:
        print(format_report(result))
    return 0


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

def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected whole numbers separated by commas") from None


def cmd_compare(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m != experiments.BASELINE and m not in REGISTRY:
            raise UnknownModel(f"unknown model {m!r}; known: {', '.join(REGISTRY)}, {experiments.BASELINE}")
    config = experiments.CompareConfig(models=models, noise=_int_list(args.noise, "--noise"), seeds=args.seeds,
                                       worksheet=args.worksheet, epochs=args.epochs, iters=args.iters,
                                       hidden=args.hidden, prune=args.prune)
    pairs = _load_labelled(args.data)
    experiments.compare(pairs, config, args.out)
    print(f"wrote {args.out}/results.csv, results.md, loss curves and report.md")
    return 0


# ------------------------------------------------------------------------------------------- serve

def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import create_app
    if args.threads:
        torch.set_num_threads(args.threads)
    app = create_app(model_path=args.model)
    # keep-alive longer than a loaded server's slowest answer, so clients never reuse a connection it just closed
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if not args.verbose else "info",
                timeout_keep_alive=30)
    return 0


# ------------------------------------------------------------------------------------------- presets

def cmd_presets(args: argparse.Namespace) -> int:
    for name, preset in PRESETS.items():
        settings = resolve_settings(name)
        print(f"{name}\n  {preset.description}\n  model: {asdict(settings.model)}")
        print(f"  {'worksheet' if settings.worksheet else 'trainer'}: {asdict(settings.train)}"
              + (f", prune {settings.prune}" if settings.prune else "") + "\n")
    return 0


# ------------------------------------------------------------------------------------------- split

def cmd_split(args: argparse.Namespace) -> int:
    pairs = _load_labelled(args.data)
    fractions = data.parse_split(args.split)
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

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nameorigin", description="Which language does a name come from?")
    p.add_argument("--version", action="version", version=f"nameorigin {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

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
    t.add_argument("--out", default="model.safetensors", help="checkpoint to write")
    t.add_argument("--split", default="0.8,0.1,0.1", help="TRAIN,VALID,TEST fractions of distinct names")
    t.add_argument("--split-seed", type=ranged("--split-seed"), default=0, help="seed of the leak-free split")
    t.add_argument("--prune", type=ranged("--prune"), help="keep at most N training names a language (seed 000: 50)")
    t.add_argument("--seed", type=ranged("--seed"), help="seed of initial weights, sampling and noise")
    t.add_argument("--noise", type=ranged("--noise"), help="the worksheet's punctuation noise level")
    t.add_argument("--lr", type=ranged("--lr"), help=f"learning rate ({TrainConfig.lr}; worksheet {WorksheetConfig.lr})")
    t.add_argument("--epochs", type=ranged("--epochs"), help=f"most epochs ({TrainConfig.epochs})")
    t.add_argument("--batch-size", type=ranged("--batch-size"), help=f"names a batch ({TrainConfig.batch_size})")
    t.add_argument("--optimizer", choices=["adam", "sgd"])
    t.add_argument("--sampling", choices=["natural", "balanced"], help="balanced: each language equally often")
    t.add_argument("--clip", type=ranged("--clip"), help=f"gradient-norm clipping, 0 off ({TrainConfig.clip})")
    t.add_argument("--patience", type=ranged("--patience"), help=f"early stop after N epochs without progress ({TrainConfig.patience})")
    t.add_argument("--select", choices=["macro_f1", "accuracy", "loss"], help="validation figure picking the best epoch")
    t.add_argument("--weight-decay", type=ranged("--weight-decay"))
    t.add_argument("--label-smoothing", type=ranged("--label-smoothing"))
    t.add_argument("--class-weight", type=ranged("--class-weight"),
                   help="loss weight of each language: (N / (C n_c)) ** POWER; 0 none, 0.5 sqrt, 1 balanced")
    t.add_argument("--schedule", choices=["constant", "cosine", "plateau"], help="learning-rate schedule")
    t.add_argument("--worksheet", action="store_const", const=True, help="the seeds' one-name-at-a-time loop")
    t.add_argument("--iters", type=ranged("--iters"), help=f"worksheet steps ({WorksheetConfig.iters})")
    t.add_argument("--print-every", type=ranged("--print-every"), help=f"worksheet: a line every N steps ({WorksheetConfig.print_every})")
    t.add_argument("--plot-every", type=ranged("--plot-every"), help=f"worksheet: a loss average every N steps ({WorksheetConfig.plot_every})")
    t.add_argument("--plot", help="save the run's loss curve as PNG")
    t.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    t.add_argument("--threads", type=ranged("--threads"), default=0, help="torch threads (0: torch's default)")
    t.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="rank languages for names")
    pr.add_argument("names", nargs="*")
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
    pr.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", help="accuracy, macro-F1 and per-language figures on labelled names")
    e.add_argument("--model", help="checkpoint (default: the bundled model)")
    e.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    e.add_argument("--json", action="store_true")
    e.add_argument("--plot", help="save the row-normalised confusion matrix as PNG")
    e.add_argument("--reliability", help="save a reliability diagram (before and after temperature scaling) as PNG")
    e.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    e.set_defaults(func=cmd_evaluate)
    a = sub.add_parser("attention", help="each character's attention weight, for gru-attention models")
    a.add_argument("names", nargs="+")
    a.add_argument("--model", help="checkpoint of a gru-attention model")
    a.add_argument("--plot", help="save a heat map as PNG")
    a.set_defaults(func=cmd_attention)

    c = sub.add_parser("compare", help="the worksheet's experiments: models x noise x seeds, tables, curves, report")
    c.add_argument("--models", default="rnn,gru,gru-attention,baseline",
                   help=f"comma-separated: {', '.join(REGISTRY)}, {experiments.BASELINE} (needs scikit-learn)")
    c.add_argument("--noise", default="0,5", help="noise levels, comma-separated")
    c.add_argument("--seeds", type=ranged("--seeds"), default=1, help="seeds per model and noise level")
    c.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    c.add_argument("--out", required=True, help="folder for results.csv, results.md, loss_noise*.png, report.md")
    c.add_argument("--epochs", type=ranged("--epochs"), default=experiments.CompareConfig.epochs, help="batched trainer's epochs")
    c.add_argument("--worksheet", action="store_true", help="train with the seeds' one-name loop")
    c.add_argument("--iters", type=ranged("--iters"), default=experiments.CompareConfig.iters, help="worksheet loop steps")
    c.add_argument("--hidden", type=ranged("--hidden"), help="hidden size (default: 32 with --worksheet, else the default preset's)")
    c.add_argument("--prune", type=ranged("--prune"), default=experiments.CompareConfig.prune,
                   help="worksheet loop: names a language, as seed 000")
    c.set_defaults(func=cmd_compare)

    sv = sub.add_parser("serve", help="the HTTP API and web page")
    sv.add_argument("--model", help="checkpoint (default: the bundled model)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=ranged("--port"), default=8000)
    sv.add_argument("--threads", type=ranged("--threads"), default=1,
                    help="torch threads for inference (1: requests are small; more threads spin against the HTTP work)")
    sv.set_defaults(func=cmd_serve)

    ps = sub.add_parser("presets", help="list the named training configurations")
    ps.set_defaults(func=cmd_presets)

    sp = sub.add_parser("split", help="write a leak-free, stratified split of labelled names as TSV files")
    sp.add_argument("--data", help="folder of <Language>.txt files or CSV/TSV of name,label")
    sp.add_argument("--split", default="0.8,0,0.2", help="TRAIN,VALID,TEST fractions of distinct names")
    sp.add_argument("--seed", type=ranged("--seed"), default=0)
    sp.add_argument("--out", required=True, help="folder for train.tsv, valid.tsv, test.tsv")
    sp.set_defaults(func=cmd_split)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="nameorigin: %(message)s")
    try:
        return args.func(args)
    except (data.DataError, CheckpointError, BadName, UnknownModel, UnknownPreset, UsageError) as e:
        print(f"nameorigin: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("nameorigin: interrupted", file=sys.stderr)
        return 130
