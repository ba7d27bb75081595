"""Make the model that ships in the package, with honest held-out figures in its metadata.

    python bench/bundle.py --data ../shared/data/names [--preset bundled] \
        [--out src/nameorigin/assets/default.safetensors]

1. a leak-free 80/20 split of distinct names (``nameorigin split --split 0.8,0,0.2``);
2. ``nameorigin train --preset PRESET --data 80%/train.tsv --split 0.9,0.1,0`` and ``nameorigin evaluate`` on the
   held-out 20 %: the figures a user can expect on names the model never saw;
3. the same preset on the full data (``--split 0.9,0.1,0``: 10 % for validation, which the trust layer needs);
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
from pathlib import Path

from nameorigin import checkpoint
from nameorigin.predict import default_model_path
from nameorigin.trust import Trust


def run(*argv: str) -> str:
    cmd = [sys.executable, "-m", "nameorigin", *argv]
    print("$ nameorigin " + shlex.join(argv), flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    print(done.stdout.rstrip())
    print(f"  ({time.perf_counter() - started:.0f}s)", flush=True)
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the worksheets' names (folder of <Language>.txt files)")
    ap.add_argument("--preset", default="bundled", help="preset to train (default: bundled)")
    ap.add_argument("--out", default=str(default_model_path()), help="where the shipped model goes")
    ap.add_argument("--work", help="folder for the 80/20 split and model (default: a temporary folder)")
    ap.add_argument("--threads", default="1", help="torch threads of each training run (default: 1; on a busy "
                                                   "machine more threads wait on each other)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        run("split", "--data", args.data, "--split", "0.8,0,0.2", "--seed", "0", "--out", str(work / "split80"))
        m80 = work / "model80.safetensors"
        run("train", "--preset", args.preset, "--data", str(work / "split80" / "train.tsv"), "--split", "0.9,0.1,0",
            "--out", str(m80), "--threads", args.threads, "--quiet")
        held_out = json.loads(run("evaluate", "--model", str(m80), "--data", str(work / "split80" / "test.tsv"),
                                  "--json"))
        run("train", "--preset", args.preset, "--data", args.data, "--split", "0.9,0.1,0", "--out", args.out,
            "--threads", args.threads, "--quiet")
    ck = checkpoint.load(args.out)
    ck.meta.setdefault("metrics", {})["held_out"] = {
        "accuracy": held_out["accuracy"], "macro_f1": held_out["macro_f1"], "n": held_out.get("n"),
        "source": f"the same preset ({args.preset}) trained on 80 % of a leak-free split of distinct names "
                  "(split seed 0) and evaluated on the other 20 %, which it never saw",
    }
    layer = Trust.from_checkpoint(ck.labels, ck.meta, ck.tensors, source=args.out)  # its tensors go back too
    checkpoint.save(args.out, ck.model, ck.labels, {k: v for k, v in ck.meta.items() if k != "trust"}, trust=layer)
    again = checkpoint.load(args.out)
    if Trust.from_checkpoint(again.labels, again.meta, again.tensors).oos is None:
        raise SystemExit(f"{args.out}: the out-of-scope detector did not survive the rewrite")
    print(f"{args.out}: held-out accuracy {held_out['accuracy']:.4f}, macro-F1 {held_out['macro_f1']:.4f} "
          "recorded in its metadata")


if __name__ == "__main__":
    main()
