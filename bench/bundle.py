"""Make the model that ships in the package, with honest held-out figures in its metadata.

    python bench/bundle.py --data ../shared/data/names [--corpus corpus.parquet [--benchmark real-names.tsv]] \
        [--preset bundled] [--out src/nameorigin/assets/default.safetensors]

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

Every step is a ``nameorigin`` command, printed before it runs, so each can be repeated by hand.
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

from nameorigin import checkpoint, corpus
from nameorigin.predict import default_model_path
from nameorigin.trust import Trust


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
        "n": report.get("n"),
        "per_language": {
            lang: {k: v[k] for k in ("f1", "support")} for lang, v in report.get("per_language", {}).items()
        },
        "source": source,
        **({"out_of_scope": report["out_of_scope"]} if "out_of_scope" in report else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the worksheets' names (folder of <Language>.txt files)")
    ap.add_argument("--corpus", help="a corpus of real surnames (`nameorigin corpus`) both runs train with")
    ap.add_argument(
        "--benchmark",
        help="the real-names benchmark to score (a TSV of `nameorigin corpus --benchmark`; default: the corpus's own "
        "held-out names), e.g. a smaller corpus's, so that corpora of two sizes are scored on the same names",
    )
    ap.add_argument("--preset", default="bundled", help="preset to train (default: bundled)")
    ap.add_argument("--out", default=str(default_model_path()), help="where the shipped model goes")
    ap.add_argument("--work", help="folder for the 80/20 split and model (default: a temporary folder)")
    ap.add_argument(
        "--threads",
        default="1",
        help="torch threads of each training run (default: 1; on a busy machine more threads wait on each other)",
    )
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with_corpus = ["--corpus", args.corpus] if args.corpus else []
        run("split", "--data", args.data, "--split", "0.8,0,0.2", "--seed", "0", "--out", str(work / "split80"))
        m80 = work / "model80.safetensors"
        with ThreadPoolExecutor(2) as pool:  # two processes, one training each
            # the 80 % run's corpus leaves out the held-out 20 %: otherwise a tutorial test name could be learnt
            # as a corpus name (Smith stands in both)
            held20 = ["--exclude", str(work / "split80" / "test.tsv")] if args.corpus else []
            runs = [
                pool.submit(
                    run,
                    "train",
                    "--preset",
                    args.preset,
                    "--data",
                    str(data),
                    "--split",
                    "0.9,0.1,0",
                    *with_corpus,
                    *guard,
                    "--out",
                    str(out),
                    "--threads",
                    args.threads,
                    "--quiet",
                )
                for data, out, guard in ((work / "split80" / "train.tsv", m80, held20), (args.data, args.out, []))
            ]
            for r in runs:
                r.result()
        held_out = held_out_figures(
            json.loads(run("evaluate", "--model", str(m80), "--data", str(work / "split80" / "test.tsv"), "--json")),
            f"the same preset ({args.preset}) trained on 80 % of a leak-free split of distinct names "
            f"(split seed 0){' and the corpus' if args.corpus else ''}, evaluated on the other 20 %, which it "
            "never saw",
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
    ck = checkpoint.load(args.out)
    ck.meta.setdefault("metrics", {})["held_out"] = held_out
    layer = Trust.from_checkpoint(ck.labels, ck.meta, ck.tensors, source=args.out)  # its tensors go back too
    checkpoint.save(args.out, ck.model, ck.labels, {k: v for k, v in ck.meta.items() if k != "trust"}, trust=layer)
    again = checkpoint.load(args.out)
    if Trust.from_checkpoint(again.labels, again.meta, again.tensors).oos is None:
        raise SystemExit(f"{args.out}: the out-of-scope detector did not survive the rewrite")
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
