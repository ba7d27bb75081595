"""Make the model that ships in the package, with honest held-out figures in its metadata.

    python bench/bundle.py --data ../shared/data/names [--corpus corpus.parquet [--benchmark real-names.tsv]] \
        [--twin-corpus corpus-twin.parquet] [--twin-exclude FILE...] [--preset bundled] \
        [--out src/nameorigin/assets/default.safetensors]

1. a leak-free 80/20 split of distinct names (``nameorigin split --split 0.8,0,0.2``);
2. ``nameorigin train --preset PRESET --data 80%/train.tsv --split 0.9,0.1,0 [--corpus FILE]`` and
   ``nameorigin evaluate`` on the held-out 20 % (``--exclude``: kept out of the corpus too): the figures a user
   can expect on names the model never saw;
   with a corpus, also on its held-out real names (never trained on: the corpus keeps them out of training) and
   on the real out-of-scope surnames of the countries held out from fitting the detector;
3. the same preset on the full data (``--split 0.9,0.1,0``: 10 % for validation, which the trust layer needs),
   trained at the same time as step 2 (the two runs are independent: one process each);
4. the held-out figures of step 2 written into that checkpoint's metadata (``metrics.held_out``), saying
   where they come from; the service's ``/api/model`` and the page show them.

``--twin-exclude FILE...`` keeps names out of the 80 % twin alone, and ``--twin-corpus`` gives it its own corpus
(e.g. one built with ``nameorigin corpus --exclude`` those names): for names another published benchmark reports
on, which the twin, whose figures are the reported ones, must never see, while the shipped model learns them.
``--exclude`` keeps names out of both. (The shipped model keeps the full-name benchmark's surnames out with
``--exclude``: learning them, it answered Smith, Jones, Brown and Taylor Scottish, as the tutorial also lists
them; see docs/model-card.md.) ``--dry-run`` prints the split and the two trainings, and runs nothing.

Every step is a ``nameorigin`` command, printed before it runs, so each can be repeated by hand.

``--kind first`` makes the shipped first-name model instead (``--out`` default
``src/nameorigin/assets/first.safetensors``) from a first-name corpus (``nameorigin corpus --kind first``), its only
source: one ``nameorigin train --kind first --corpus FILE`` (its scored validation names validate and pick the
epoch), then ``evaluate`` on the corpus's scored held-out first names (never trained on: the corpus holds them out
by a hash of the name), with the top confusions and the real out-of-scope first names of the held-out countries,
written into ``metrics.held_out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nameorigin
from nameorigin import checkpoint, corpus
from nameorigin.predict import default_model_path
from nameorigin.trust import Trust

FIRST_OUT = Path(__file__).resolve().parent.parent / "src" / "nameorigin" / "assets" / "first.safetensors"


def run(*argv: str) -> str:
    cmd = [sys.executable, "-m", "nameorigin", *argv]
    print("$ nameorigin " + shlex.join(argv), flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    print(done.stdout.rstrip())
    print(f"  ({time.perf_counter() - started:.0f}s: nameorigin {argv[0]} {' '.join(argv[1:3])})", flush=True)
    return done.stdout


def held_out_figures(report: dict, source: str) -> dict:
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        **({"macro_f1_covered": report["macro_f1_covered"]} if "macro_f1_covered" in report else {}),
        "n": report.get("n"),
        "per_language": {
            lang: {k: v[k] for k in ("f1", "support")} for lang, v in report.get("per_language", {}).items()
        },
        "source": source,
        **({"out_of_scope": report["out_of_scope"]} if "out_of_scope" in report else {}),
    }


def top_confusions(evaluation, n: int = 10) -> list[dict]:
    """The ``n`` largest off-diagonal cells of an evaluation's confusion matrix: true language, predicted
    language, how many, and their share of the true language's names."""
    m = evaluation.confusion().numpy()
    labels = evaluation.labels
    cells = [(int(m[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and m[i, j]]
    return [
        {"true": labels[i], "predicted": labels[j], "n": k, "share": round(k / max(1, int(m[i].sum())), 4)}
        for k, i, j in sorted(cells, reverse=True)[:n]
    ]


def save_held_out(path: str, held_out: dict) -> None:
    """``held_out`` into the checkpoint's ``metrics.held_out``, its trust layer (tensors included) kept."""
    checkpoint.rewrite(path, lambda meta, _layer: meta.setdefault("metrics", {}).update(held_out=held_out))
    again = checkpoint.load(path)
    if Trust.from_checkpoint(again.labels, again.meta, again.tensors).oos is None:
        raise SystemExit(f"{path}: the out-of-scope detector did not survive the rewrite")


def set_default_prior(path, spec: str) -> None:
    """Name the language mix the checkpoint's answers are given under when none is asked for: ``half``
    (halfway between its training mix and an even one), ``uniform``, or ``training`` (its own: none stored)."""
    import numpy as np

    def edit(_meta: dict, layer: Trust) -> None:
        even = np.full(len(layer.labels), 1 / len(layer.labels))
        layer.default_prior = {"half": (layer.train_prior + even) / 2, "uniform": even, "training": None}[spec]

    checkpoint.rewrite(path, edit)
    print(f"{path}: default prior {spec}", flush=True)


def first_names(args) -> None:
    """The shipped first-name model (``--kind first``): see the module's docstring."""
    started = time.perf_counter()
    out = args.out or str(FIRST_OUT)
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    exclude = ["--exclude", *args.exclude] if args.exclude else []
    # the bundled preset's student alone: its teachers (the mixed preset, out of fold) would triple the time
    alone = ["--distill-weight", "0"] if args.preset.startswith("bundled") else []
    # held at float16 as the surname model's network is: the two fit in 3 MB of assets
    argv = ["train", "--kind", "first", "--corpus", args.corpus, "--preset", args.preset, *alone, *epochs, *exclude,
            "--compact", "--out", out, "--threads", args.threads, "--quiet"]  # fmt: skip
    if args.dry_run:
        print("$ nameorigin " + shlex.join(argv))
        return
    run(*argv)
    real = corpus.read(args.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        bench, oos = Path(tmp) / "first-held-out.tsv", Path(tmp) / "first-out-of-scope.txt"
        corpus.write_benchmark(real, bench)
        corpus.write_out_of_scope_benchmark(real, oos)
        print(f"$ nameorigin evaluate --model {out} --data {bench.name} --out-of-scope {oos.name} --json", flush=True)
        evaluation = nameorigin.evaluate(out, str(bench), out_of_scope=str(oos))
    held_out = held_out_figures(
        evaluation.report,
        f"the first-name model ({args.preset}{', its student alone' if alone else ''}) on the first-name "
        "corpus's held-out names (never trained on; scored "
        f"where the top language holds >= {real.meta['config']['label_share']} of a name's population); out of "
        f"scope: the real first names of {', '.join(corpus.OOS_HELD_OUT_COUNTRIES)} (countries held out from "
        "fitting the detector)",
    )
    held_out["confusions"] = top_confusions(evaluation)
    save_held_out(out, held_out)
    worst = (f"{c['true']} -> {c['predicted']} {c['n']}" for c in held_out["confusions"])
    print(f"top confusions: {', '.join(worst)}")
    print(
        f"{out}: held-out first names accuracy {held_out['accuracy']:.4f}, macro-F1 {held_out['macro_f1']:.4f} "
        f"({held_out['n']} names) recorded in its metadata ({time.perf_counter() - started:.0f}s in all)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["surname", "first"], default="surname", help="which model (default: surname)")
    ap.add_argument("--data", help="the worksheets' names (folder of <Language>.txt files); surname models")
    ap.add_argument("--epochs", type=int, help="--kind first: epochs (default: the preset's)")
    ap.add_argument("--exclude", nargs="+", default=[], metavar="FILE", help="names never to train on (both kinds)")
    ap.add_argument("--corpus", help="a corpus of real surnames (`nameorigin corpus`) both runs train with")
    ap.add_argument(
        "--twin-corpus",
        help="the corpus the 80 %% twin trains with instead of --corpus (e.g. one built with --exclude the "
        "--twin-exclude names; surname models)",
    )
    ap.add_argument(
        "--twin-exclude",
        nargs="+",
        default=[],
        metavar="FILE",
        help="names kept out of the 80 %% twin alone (the names another benchmark reports on; surname models): the "
        "shipped model learns them",
    )
    ap.add_argument(
        "--benchmark",
        help="the real-names benchmark to score (a TSV of `nameorigin corpus --benchmark`; default: the corpus's own "
        "held-out names), e.g. a smaller corpus's, so that corpora of two sizes are scored on the same names",
    )
    ap.add_argument(
        "--preset",
        help="preset to train (default: bundled; --kind first: bundled-network, the network alone, as the shipped "
        "first-name model was trained)",
    )
    ap.add_argument(
        "--default-prior",
        choices=["half", "uniform", "training"],
        default="half",
        help="the mix the shipped model answers under when none is asked for (default: half, halfway between "
        "the training data's mix and an even one)",
    )
    ap.add_argument(
        "--skip-training",
        action="store_true",
        help="reuse the two models already in --work and --out (evaluate and record only)",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the split and the two training commands, run nothing")
    ap.add_argument("--out", help="where the shipped model goes (default: the package's default or first model)")
    ap.add_argument("--work", help="folder for the 80/20 split and model (default: a temporary folder)")
    ap.add_argument(
        "--threads",
        default="1",
        help="torch threads of each training run (default: 1; on a busy machine more threads wait on each other)",
    )
    args = ap.parse_args()
    args.preset = args.preset or ("bundled-network" if args.kind == "first" else "bundled")
    if args.twin_corpus and not args.corpus:
        ap.error("--twin-corpus: give --corpus too (the shipped model's)")
    if args.kind == "first":
        if args.twin_corpus or args.twin_exclude:
            ap.error("--twin-corpus, --twin-exclude: surname models (the first-name model has no twin)")
        if not args.corpus:
            ap.error("--kind first: give the first-name corpus (--corpus FILE.parquet)")
        return first_names(args)
    if not args.data:
        ap.error("--data: the worksheets' names are needed for the surname model")
    args.out = args.out or str(default_model_path())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with_corpus = ["--corpus", args.corpus] if args.corpus else []
        twin_corpus = ["--corpus", args.twin_corpus or args.corpus] if args.corpus else []
        m80 = work / "model80.safetensors"
        # the 80 % run's corpus leaves out the held-out 20 %: otherwise a tutorial test name could be learnt as a
        # corpus name (Smith stands in both); --exclude: out of both runs; --twin-exclude (e.g. the full-name
        # benchmarks' names, bench/fullnames-sets): out of the twin only
        twin_guard = [*([str(work / "split80" / "test.tsv")] if args.corpus else []), *args.exclude, *args.twin_exclude]
        trainings = [
            ["train", "--preset", args.preset, "--data", str(data), "--split", "0.9,0.1,0", *sources,
             *(["--exclude", *guard] if guard else []), "--out", str(out), "--threads", args.threads, "--quiet"]
            for data, out, sources, guard in (
                (work / "split80" / "train.tsv", m80, twin_corpus, twin_guard),
                (args.data, args.out, with_corpus, args.exclude),
            )
        ]  # fmt: skip
        split = ["split", "--data", args.data, "--split", "0.8,0,0.2", "--seed", "0", "--out", str(work / "split80")]
        if args.dry_run:
            for argv in (split, *trainings):
                print("$ nameorigin " + shlex.join(argv))
            return
        run(*split)
        if not args.skip_training:
            with ThreadPoolExecutor(2) as pool:  # two processes, one training each
                for r in [pool.submit(run, *argv) for argv in trainings]:
                    r.result()
        for path in (m80, args.out):
            set_default_prior(path, args.default_prior)
        test80 = str(work / "split80" / "test.tsv")
        held_out = held_out_figures(
            json.loads(run("evaluate", "--model", str(m80), "--data", test80, "--json")),
            f"the same preset ({args.preset}) trained on 80 % of a leak-free split of distinct names "
            f"(split seed 0){' and the corpus' if args.corpus else ''}, evaluated on the other 20 %, which it "
            f"never saw; answers under its default prior ({args.default_prior})"
            + (
                f"; the twin also never saw the names of {', '.join(Path(f).name for f in args.twin_exclude)}, "
                "which this model learnt"
                if args.twin_exclude
                else ""
            ),
        )
        held_out["training_prior"] = held_out_figures(
            json.loads(run("evaluate", "--model", str(m80), "--data", test80, "--prior", "training", "--json")),
            "the same, under the training data's mix (`--prior training`), the mix of the tutorial's own test names",
        )
        if args.corpus:
            real = corpus.read(args.corpus)
            bench, oos = work / "real-names.tsv", work / "real-out-of-scope.txt"
            if args.benchmark:
                bench = Path(args.benchmark)
            else:
                corpus.write_benchmark(real, bench)
            corpus.write_out_of_scope_benchmark(real, oos)
            held_out["real_names"] = held_out_figures(
                json.loads(
                    run("evaluate", "--model", str(m80), "--data", str(bench), "--out-of-scope", str(oos), "--json")
                ),
                f"the same 80 % model on the corpus's held-out real names (never trained on; scored where the top "
                f"language holds >= {real.meta['config']['label_share']} of a name's population); out of scope: "
                f"the real surnames of {', '.join(corpus.OOS_HELD_OUT_COUNTRIES)} (countries held out from "
                "fitting the detector)",
            )
            held_out["real_names_uniform_prior"] = held_out_figures(
                json.loads(run("evaluate", "--model", str(m80), "--data", str(bench), "--prior", "uniform", "--json")),
                "the same, each language as likely a priori (`--prior uniform`): a file of real names whose mix is "
                "not the tutorial's",
            )
    save_held_out(args.out, held_out)
    print(
        f"{args.out}: held-out accuracy {held_out['accuracy']:.4f}, macro-F1 {held_out['macro_f1']:.4f}"
        + (
            f"; real names {held_out['real_names']['accuracy']:.4f} / {held_out['real_names']['macro_f1']:.4f}"
            f" (--prior uniform: {held_out['real_names_uniform_prior']['accuracy']:.4f} / "
            f"{held_out['real_names_uniform_prior']['macro_f1']:.4f})"
            if "real_names" in held_out
            else ""
        )
        + f" recorded in its metadata ({time.perf_counter() - started:.0f}s "
        "in all)"
    )


if __name__ == "__main__":
    main()
