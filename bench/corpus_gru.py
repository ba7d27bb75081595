"""Does the corpus of real surnames help? gru (the default preset) trained on the tutorial data alone, on the
tutorial data and the corpus jointly, and pretrained on the corpus then fine-tuned on the tutorial data; each
scored on the tutorial's leak-free held-out split and on the corpus's held-out real names (never trained on).

    nameorigin corpus --out corpus.parquet --per-language 3000
    python bench/corpus_gru.py --corpus corpus.parquet [--epochs 4] [--pretrain-epochs 2] [--weight 0.5]

The leak guard runs as training will run it: the tutorial's validation and test names leave the corpus, the
corpus's validation and held-out names leave the tutorial's training names. Best epoch by the tutorial's
validation macro-F1; both validations are printed, as the choice of the default rests on both.
"""

from __future__ import annotations

import argparse
import time

import torch

from nameorigin import api, corpus, data
from nameorigin.evaluation import metrics
from nameorigin.models import batched_log_probs
from nameorigin.training import fit, resolve_settings


def score(model, pairs, labels, shift=None) -> dict:
    """Metrics of ``model`` on ``pairs``; ``shift`` (C,) added to the log-probabilities first (a target prior
    against the model's own, as ``--prior`` does)."""
    enc = data.encode_pairs(pairs, labels)
    log_probs = batched_log_probs(model, enc.tokens, enc.lengths)[0]
    predicted = (log_probs + (shift if shift is not None else 0)).argmax(1)
    return metrics(enc.labels, predicted, labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--data", help="the tutorial's names (default: $NAMEORIGIN_DATA)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--weight", type=float, default=0.5, help="joint: a corpus name's loss weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--benchmark",
        help="score the real names of this TSV (name, language; `nameorigin corpus --benchmark`) instead of the "
        "corpus's own held-out names: e.g. a smaller corpus's benchmark, to compare corpora of two sizes",
    )
    p.add_argument("--variants", default="tutorial only,joint,joint own prior,pretrain")
    args = p.parse_args()
    torch.set_num_threads(1)
    pairs = api.load_names(args.data)
    labels = data.languages(pairs)
    parts = data.split(pairs, (0.8, 0.1, 0.1), seed=args.seed)
    real = corpus.read(args.corpus)
    held_names = [n for n, _ in parts.valid + parts.test]
    train, part, guard = corpus.guarded_sources(real, parts.train, labels, labelled_held=held_names)
    print(
        f"tutorial: {len(parts.train)} training pairs ({guard.removed_from_train} removed: corpus validation or "
        f"held-out names), {len(parts.valid)} validation, {len(parts.test)} test; corpus: {len(part)} training "
        f"names ({guard.removed_from_corpus} removed: tutorial validation or test names)"
    )
    corpus_valid, corpus_held = real.scored_pairs("valid"), real.held_out_pairs()
    corpus_valid = [(n, lab) for n, lab in corpus_valid if lab in labels]
    if args.benchmark:
        corpus_held = [(n, lab) for n, lab in data.read_labelled(args.benchmark)]
    corpus_held = [(n, lab) for n, lab in corpus_held if lab in labels]
    print(
        f"corpus validation {len(corpus_valid)} names, held-out {len(corpus_held)} names (scored: top language "
        f">= {real.meta['config']['label_share']})\n"
    )
    valid = data.encode_pairs(parts.valid, labels)
    from nameorigin.training import source_offsets

    mix_shift = source_offsets(data.encode_pairs(train, labels).labels, part.targets, len(labels))
    rows = []
    for variant in args.variants.split(","):
        mode = {"tutorial only": None, "joint": "joint", "joint own prior": "joint", "pretrain": "pretrain"}[variant]
        settings = resolve_settings(
            None,
            train={
                "epochs": args.epochs,
                "seed": args.seed,
                "corpus_weight": args.weight,
                "corpus_mode": mode or "joint",
                "pretrain_epochs": args.pretrain_epochs,
                "corpus_prior": "own" if variant == "joint own prior" else "shared",
                "patience": 0,
            },
        )
        started = time.perf_counter()
        model, history, _ = fit(settings, train if mode else parts.train, valid, labels, corpus=part if mode else None)
        seconds = time.perf_counter() - started
        figures = [score(model, s, labels) for s in (parts.valid, corpus_valid, parts.test, corpus_held)]
        figures.append(score(model, corpus_held, labels, shift=mix_shift))
        venc = data.encode_pairs(parts.valid, labels)
        own = batched_log_probs(model, venc.tokens, venc.lengths)[0].exp().mean(0)
        figures.append(score(model, corpus_held, labels, shift=-own.log()))  # --prior uniform
        rows.append((variant, seconds, figures))
        print(
            f"{variant}: {seconds:.0f}s, best epoch {history.best_epoch}: "
            + "; ".join(
                f"{what} {m['accuracy']:.3f}/{m['macro_f1']:.3f}"
                for what, m in zip(
                    (
                        "tutorial valid",
                        "corpus valid",
                        "tutorial test",
                        "corpus held-out",
                        "held-out, corpus mix",
                        "held-out, uniform",
                    ),
                    figures,
                    strict=False,
                )
            ),
            flush=True,
        )
    print(
        f"\n| gru (default preset), seed {args.seed} | tutorial valid acc / F1 | corpus valid acc / F1 | "
        "tutorial held-out "
        "acc / F1 | real names held-out acc / F1 | train s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for variant, seconds, figures in rows:
        print(
            f"| {variant} | "
            + " | ".join(f"{m['accuracy']:.3f} / {m['macro_f1']:.3f}" for m in figures)
            + f" | {seconds:.0f} |"
        )
    print("\nper language on the real names held out (F1, support):")
    langs = sorted({lab for _, lab in corpus_held})
    print("| variant | " + " | ".join(langs) + " |")
    print("| --- |" + " --- |" * len(langs))
    for variant, _, figures in rows:
        per = figures[3]["per_language"]
        print(f"| {variant} | " + " | ".join(f"{per.get(lang, {}).get('f1', 0):.2f}" for lang in langs) + " |")
    print(
        "| support | "
        + " | ".join(str(figures[3]["per_language"].get(lang, {}).get("support", 0)) for lang in langs)
        + " |"
    )


if __name__ == "__main__":
    main()
