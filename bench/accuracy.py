"""The search behind the ``best`` preset: variants trained as ``nameorigin train --data TRAIN --split 0.9,0.1,0``
would train them, chosen on the validation 10 % only, reported on the held-out TEST file as well.

    nameorigin split --split 0.8,0,0.2 --out split80
    python bench/accuracy.py --train split80/train.tsv --test split80/test.tsv [--seeds 3] [--variants 'A;B']

For each variant and seed it prints validation and held-out accuracy and macro-F1; then a Markdown table of
the mean over seeds, and, from the same runs, the ensemble of all the seeds' models (probabilities averaged,
as ``--members`` does). Three kinds of variant: a single model (``VARIANTS``: model and trainer settings over
the default preset's, ``ngram-lr`` included); a mixed ensemble (``MIXES``: the same seed's runs of several
variants, their weights fitted on validation as ``nameorigin train`` fits a mixed preset's); and a distilled
student (``DISTILLED``: a variant trained on the out-of-fold probabilities of a teacher recipe, a variant or a
mix, with its trainer's distillation settings; its time counts the teachers'; with ``synthetic``, also on
made-up names the teacher mix labels, see ``synthetic_names``). Runs are cached in ``--cache``
(one file of log-probabilities per variant and seed; the teachers' out-of-fold probabilities too), so an
interrupted search resumes and ``--variants`` can add rows. The ranking uses validation figures only.

With ``--corpus FILE`` (``nameorigin corpus``), every variant runs twice, "tutorial only" and "tutorial + corpus"
(trained jointly with the corpus as ``nameorigin train --corpus`` trains, the leak guard applied: the validation
and ``--test`` names leave the corpus, the corpus's held-out names leave the training names), and every row is
scored on both benchmarks, the tutorial's held-out ``--test`` and the corpus's held-out real names, overall and per
language. The baselines train on the tutorial only.

    python bench/accuracy.py --train split80/train.tsv --test split80/test.tsv --corpus corpus.parquet \
        --variants 'default (gru 128)' --seeds 1 --threads 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from nameorigin import corpus, data
from nameorigin.evaluation import metrics
from nameorigin.models import MIXED, ModelConfig, batched_log_probs, mean_probabilities
from nameorigin.training import (
    PRESETS,
    Settings,
    fit,
    fit_mixture_weights,
    fit_ngram_lr,
    out_of_fold_log_probs,
    resolve_settings,
)

BI = {"bidirectional": True, "embed": 64, "dropout": 0.3}
LS = {"label_smoothing": 0.1, "schedule": "cosine", "epochs": 20, "patience": 0}
# name: (model settings, trainer settings); each starts from the default preset
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default (gru 128)": ({}, {}),
    "gru-attention bi, embed 64": ({"name": "gru-attention", **BI}, {}),
    "gru-attention bi, embed 64, class weight 0.5": ({"name": "gru-attention", **BI}, {"class_weight": 0.5}),
    "gru-attention bi, hidden 256, embed 64, dropout 0.4": (
        {"name": "gru-attention", **BI, "hidden": 256, "dropout": 0.4},
        {},
    ),
    "gru bi, 2 layers, embed 64": ({"name": "gru", **BI, "layers": 2}, {}),
    "gru-attention bi, embed 64, smoothing 0.1, cosine 20": ({"name": "gru-attention", **BI}, LS),
    "gru-attention bi, 2 layers, embed 64, smoothing 0.1, cosine 20": (
        {"name": "gru-attention", **BI, "layers": 2},
        LS,
    ),
    "gru-attention bi, hidden 256, embed 64, dropout 0.4, smoothing 0.1, cosine 20": (
        {"name": "gru-attention", **BI, "hidden": 256, "dropout": 0.4},
        LS,
    ),
    "lstm bi, embed 64, smoothing 0.1, cosine 20": ({"name": "lstm", **BI}, LS),
    "gru-attention bi, embed 64, smoothing 0.1, cosine 20, noise 2": (
        {"name": "gru-attention", **BI},
        {**LS, "noise": 2},
    ),
    "transformer 128, 2 layers, 4 heads, positions from both ends, dropout 0.1, Adam 1e-3, smoothing 0.1, cosine 20": (
        {"name": "transformer", "layers": 2, "heads": 4, "dropout": 0.1},
        {**LS, "lr": 1e-3},
    ),
    "cnn 128 x 4 widths, embed 64, dropout 0.3, smoothing 0.1, cosine 20": ({"name": "cnn", "embed": 64}, LS),
    "ngram-lr (TF-IDF char 1-5 in torch, C=10)": ({"name": "ngram-lr"}, {}),
}
GA = "gru-attention bi, embed 64, smoothing 0.1, cosine 20"
TR = "transformer 128, 2 layers, 4 heads, positions from both ends, dropout 0.1, Adam 1e-3, smoothing 0.1, cosine 20"
CNN = "cnn 128 x 4 widths, embed 64, dropout 0.3, smoothing 0.1, cosine 20"
NG = "ngram-lr (TF-IDF char 1-5 in torch, C=10)"
# name: the variants mixed (each run with the same seed), weights fitted on validation
MIXES: dict[str, list[str]] = {
    "mixed: gru-attention + transformer + cnn + ngram-lr": [GA, TR, CNN, NG],
    "mixed: gru-attention + transformer + cnn": [GA, TR, CNN],
    "mixed: gru-attention + ngram-lr": [GA, NG],
    "mixed: cnn + ngram-lr": [CNN, NG],
    "mixed: gru-attention + cnn": [GA, CNN],
    "mixed: gru-attention + cnn + ngram-lr": [GA, CNN, NG],
}
DISTIL = {"distill_weight": 0.7, "distill_temperature": 2.0}
HALF = {"distill_weight": 0.5, "distill_temperature": 2.0}
# name: (student variant, teacher recipe (a variant or a mix), folds, the student's distillation settings)
DISTILLED: dict[str, tuple[str, str, int, dict]] = {
    "gru-attention bi 128 taught by ngram-lr, 4 folds, w 0.7, T 2": (GA, NG, 4, DISTIL),
    "gru-attention bi 128 taught by gru-attention + cnn, 3 folds, w 0.5, T 2": (
        GA,
        "mixed: gru-attention + cnn",
        3,
        HALF,
    ),
    "gru-attention bi 128 taught by gru-attention + cnn, 3 folds, w 0.25, T 1 (the bundled preset)": (
        GA,
        "mixed: gru-attention + cnn",
        3,
        {"distill_weight": 0.25, "distill_temperature": 1.0},
    ),
    "gru-attention bi 128 taught by gru-attention + cnn, 3 folds, w 0.25, T 3": (
        GA,
        "mixed: gru-attention + cnn",
        3,
        {"distill_weight": 0.25, "distill_temperature": 3.0},
    ),
    "gru-attention bi 128 taught by cnn + ngram-lr, 4 folds, w 0.7, T 2": (GA, "mixed: cnn + ngram-lr", 4, DISTIL),
    # the bundled preset's student and teachers, plus a transfer set of synthetic names (see synthetic_names)
    # that the teacher mix, trained on all the training names, labels
    "the bundled preset + synthetic names x1, w 0.25, T 1": (
        GA,
        "mixed: gru-attention + cnn",
        3,
        {"distill_weight": 0.25, "distill_temperature": 1.0, "synthetic": 1},
    ),
    "the bundled preset + synthetic names x1, w 0.5, T 1": (
        GA,
        "mixed: gru-attention + cnn",
        3,
        {"distill_weight": 0.5, "distill_temperature": 1.0, "synthetic": 1},
    ),
}
# the DESIGN's baseline, the ngram-lr model `nameorigin compare` fits (deterministic: one run stands for every seed),
# with scikit-learn's keyword arguments of its logistic regression
BASELINES: dict[str, dict] = {
    "baseline: TF-IDF char 1-5, logistic regression C=10": {},
    "baseline: same, balanced class weights": {"class_weight": "balanced"},
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def settings_of(variant: str, seed: int) -> Settings:
    """The recipe of a single-model variant or of a mix (its members' recipes)."""
    if variant in MIXES:
        members = [settings_of(v, seed) for v in MIXES[variant]]
        return Settings(
            model=ModelConfig(name=MIXED, mix=[m.model.to_dict() for m in members]),
            train=members[0].train,
            worksheet=False,
            prune=0,
            members=members,
        )
    model_values, train_values = VARIANTS[variant]
    return resolve_settings("default", model=model_values, train={**train_values, "seed": seed})


def synthetic_names(train, k: int, seed: int, exclude: set[str]) -> list[str]:
    """Unlabelled names for distillation: for each training name, ``k`` times, its start (2 letters or more)
    joined to the end of another name of the same language; 3-20 characters, none a real name of the data."""
    rng = random.Random(seed)
    by_language: dict[str, list[str]] = {}
    for name, language in train:
        by_language.setdefault(language, []).append(name)
    out = set()
    for name, language in train:
        for _ in range(k):
            other = rng.choice(by_language[language])
            if len(name) < 3 or len(other) < 3:
                continue
            made = name[: rng.randint(2, len(name) - 1)] + other[rng.randint(1, len(other) - 2) :]
            if 3 <= len(made) <= 20 and made not in exclude:
                out.add(made)
    return sorted(out)


def cached(path: Path, compute) -> dict:
    if path.is_file():
        return torch.load(path)
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result, path)
    return result


PLUS = " + corpus"


class Real:
    """The corpus side of a run: the corpus made ready for training (leak-guarded) and its held-out benchmark."""

    def __init__(self, path: str, parts, test_pairs, labels, benchmark: str | None = None):
        self.ready = corpus.for_training(
            path, parts.train, labels, labelled_held=[n for n, _ in parts.valid + test_pairs]
        )
        held = data.read_labelled(benchmark) if benchmark else corpus.read(path).held_out_pairs()
        self.pairs = [(n, lab) for n, lab in held if lab in labels]
        self.bench = data.encode_pairs(self.pairs, labels)
        self.tag = self.ready.info["sha256"][:12]


def run(
    variant: str,
    seed: int,
    parts,
    valid,
    test,
    test_pairs,
    labels,
    cache: Path,
    real: Real | None = None,
    with_corpus: bool = False,
) -> dict:
    """One variant's log-probabilities on validation, test (and with ``real``, the real-names benchmark ``bench``);
    ``with_corpus``: trained with the corpus too."""
    if real is not None:
        cache = cache / (f"corpus-{real.tag}" if with_corpus else f"bench-{real.tag}")
    if real is not None:  # both rows train on the same labelled names: the leak guard's
        parts = data.Split(real.ready.train, parts.valid, parts.test)
    if variant in MIXES:
        runs = [
            run(v, seed, parts, valid, test, test_pairs, labels, cache.parent if real else cache, real, with_corpus)
            for v in MIXES[variant]
        ]
        weights, temperatures = fit_mixture_weights([r["valid"] for r in runs], valid.labels)

        def mix(split, runs=runs, weights=weights, temperatures=temperatures):
            stacked = torch.stack([r[split] for r in runs]) / temperatures.view(-1, 1, 1)
            return torch.logsumexp(torch.log_softmax(stacked, 2) + weights.log().view(-1, 1, 1), 0)

        print(
            f"  {variant}, seed {seed}: weights "
            + ", ".join(f"{w:.3f}" for w in weights.tolist())
            + "; temperatures "
            + ", ".join(f"{t:.2f}" for t in temperatures.tolist())
        )
        return {
            "valid": mix("valid"),
            "test": mix("test"),
            **({"bench": mix("bench")} if real else {}),
            "seconds": sum(r["seconds"] for r in runs),
            "epochs": None,
            "best_epoch": None,
        }

    def compute() -> dict:
        if variant in BASELINES:
            return baseline(parts, test_pairs, labels, bench=real.pairs if real else None, **BASELINES[variant])
        soft, teacher_seconds = None, 0.0
        student = variant
        if variant in DISTILLED:
            student, teacher, folds, distil = DISTILLED[variant]

            def teach() -> dict:
                started = time.perf_counter()
                oof = out_of_fold_log_probs(
                    settings_of(teacher, seed), parts.train, labels, folds=folds, valid=valid, seed=seed, printer=print
                )
                return {"log_probs": oof, "seconds": time.perf_counter() - started}

            taught = cached(cache / f"oof_{slug(teacher)}_k{folds}_s{seed}.pt", teach)
            soft, teacher_seconds = taught["log_probs"], taught["seconds"]
        settings = settings_of(student, seed)
        train = list(parts.train)
        if variant in DISTILLED:
            distil = dict(DISTILLED[variant][3])
            k = distil.pop("synthetic", 0)
            settings.train = replace(settings.train, **distil)
            if k:  # the teacher mix on all training names labels the synthetic ones: soft targets, argmax labels
                made = synthetic_names(parts.train, k, seed, {n for n, _ in [*parts.train, *parts.valid, *test_pairs]})

                def label() -> dict:
                    started = time.perf_counter()
                    model, _, _ = fit(settings_of(teacher, seed), parts.train, valid, labels)
                    encoded = data.encode_pairs([(n, labels[0]) for n in made], labels)
                    return {
                        "names": made,
                        "log_probs": batched_log_probs(model, encoded.tokens, encoded.lengths)[0],
                        "seconds": time.perf_counter() - started,
                    }

                synthetic = cached(cache / f"aug_{slug(teacher)}_x{k}_s{seed}.pt", label)
                assert synthetic["names"] == made
                train += [(n, labels[i]) for n, i in zip(made, synthetic["log_probs"].argmax(1).tolist(), strict=True)]
                soft = torch.cat([soft, synthetic["log_probs"]])
                teacher_seconds += synthetic["seconds"]
        started = time.perf_counter()
        model, history, _ = fit(
            settings, train, valid, labels, soft_targets=soft, corpus=real.ready.part if with_corpus else None
        )
        seconds = time.perf_counter() - started + teacher_seconds
        return {
            "valid": batched_log_probs(model, valid.tokens, valid.lengths)[0],
            "test": batched_log_probs(model, test.tokens, test.lengths)[0],
            **({"bench": batched_log_probs(model, real.bench.tokens, real.bench.lengths)[0]} if real else {}),
            "seconds": seconds,
            "epochs": len(history.epochs),
            "best_epoch": history.best_epoch,
        }

    return cached(cache / f"{slug(variant)}_s{seed}.pt", compute)


def baseline(parts, test_pairs, labels, bench=None, **kwargs) -> dict:
    started = time.perf_counter()
    model = fit_ngram_lr(data.encode_pairs(parts.train, labels), len(labels), **kwargs)
    seconds = time.perf_counter() - started

    def log_probs(pairs):
        encoded = data.encode_pairs(pairs, labels)
        return batched_log_probs(model, encoded.tokens, encoded.lengths)[0]

    return {
        "valid": log_probs(parts.valid),
        "test": log_probs(test_pairs),
        **({"bench": log_probs(bench)} if bench is not None else {}),
        "seconds": seconds,
        "epochs": None,
        "best_epoch": None,
    }


def figures(log_probs: torch.Tensor, target: torch.Tensor, labels) -> tuple[float, float]:
    m = metrics(target, log_probs.argmax(1), labels)
    return m["accuracy"], m["macro_f1"]


def print_both(per_language, labels) -> None:
    """Seed 0 of each row on both benchmarks, overall and per language (F1); the real names also under a
    uniform prior (as ``nameorigin evaluate --prior uniform``: the model's mean answer on validation divided out)."""
    print(
        "\n| variant (seed 0) | tutorial held-out acc / macro-F1 | real names held-out acc / macro-F1 | "
        "real names, `--prior uniform` |"
    )
    print("| --- | ---: | ---: | ---: |")
    for variant, tutorial, real, uniform in per_language:
        print(
            f"| {variant} | {tutorial['accuracy']:.4f} / {tutorial['macro_f1']:.4f} | "
            f"{real['accuracy']:.4f} / {real['macro_f1']:.4f} | {uniform['accuracy']:.4f} / {uniform['macro_f1']:.4f} |"
        )
    for what, k in (("tutorial held-out", 1), ("real names held-out", 2)):
        print(f"\nper language, {what} (F1; support in the last row):\n")
        print("| variant | " + " | ".join(labels) + " |")
        print("| --- |" + " ---: |" * len(labels))
        for row in per_language:
            per = row[k]["per_language"]
            print(
                f"| {row[0]} | "
                + " | ".join(f"{per[lang]['f1']:.2f}" if per.get(lang, {}).get("support") else "-" for lang in labels)
                + " |"
            )
        per = per_language[0][k]["per_language"]
        print("| support | " + " | ".join(str(per.get(lang, {}).get("support", 0)) for lang in labels) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="labelled names to train on (validation: 10 %% of them)")
    ap.add_argument("--test", required=True, help="held-out labelled names, never used for choices")
    ap.add_argument("--seeds", type=int, default=3)
    every = "; ".join([*BASELINES, *VARIANTS, *MIXES, *DISTILLED])
    ap.add_argument("--variants", help=f"subset, separated by semicolons (default: all): {every}")
    ap.add_argument("--cache", default="bench-accuracy-cache", help="folder of cached runs")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--corpus",
        help="also train each variant with this corpus and score the corpus's held-out real names (see above)",
    )
    ap.add_argument(
        "--benchmark",
        help="with --corpus: score these real names (`nameorigin corpus --benchmark` TSV) instead of the corpus's "
        "own held-out names, e.g. a smaller corpus's, to compare corpora of two sizes on the same names",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    known = [*BASELINES, *VARIANTS, *MIXES, *DISTILLED]
    chosen = [v.strip() for v in args.variants.split(";")] if args.variants else known
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(unknown)}; known: {'; '.join(known)}")
    pairs = data.read_labelled(args.train)
    labels = data.languages(pairs)
    parts = data.split(pairs, (0.9, 0.1, 0.0), seed=0)  # as `nameorigin train --split 0.9,0.1,0` splits
    valid = data.encode_pairs(parts.valid, labels)
    test_pairs = data.read_labelled(args.test)
    test = data.encode_pairs(test_pairs, labels)
    print(f"train {len(parts.train)}, validation {len(parts.valid)}, held-out test {len(test)} names")
    real = Real(args.corpus, parts, test_pairs, labels, args.benchmark) if args.corpus else None
    if real:
        print(
            f"corpus: {len(real.ready.part)} training names; real-names benchmark {len(real.pairs)} names; "
            f"tutorial training names with the corpus {len(real.ready.train)}"
        )
        chosen = [v + suffix for v in chosen for suffix in ("", PLUS) if not (suffix and v in BASELINES)]
    rows, per_language = [], []
    for variant in chosen:
        runs = []
        base, with_corpus = (variant[: -len(PLUS)], True) if variant.endswith(PLUS) else (variant, False)
        for seed in range(1 if base in BASELINES or base == NG else args.seeds):
            r = run(base, seed, parts, valid, test, test_pairs, labels, Path(args.cache), real, with_corpus)
            runs.append(r)
            v, t = figures(r["valid"], valid.labels, labels), figures(r["test"], test.labels, labels)
            print(
                f"{variant} | seed {seed}: {r['seconds']:.0f}s, best epoch {r['best_epoch']}; validation "
                f"{v[0]:.4f}/{v[1]:.4f}; test {t[0]:.4f}/{t[1]:.4f}",
                flush=True,
            )
        if real:
            per_language.append(
                (
                    variant,
                    *(
                        metrics(target, runs[0][split].argmax(1), labels)
                        for split, target in (("test", test.labels), ("bench", real.bench.labels))
                    ),
                    metrics(
                        real.bench.labels,
                        (runs[0]["bench"] - runs[0]["valid"].exp().mean(0).log()).argmax(1),
                        labels,
                    ),
                )
            )
        single = [(figures(r["valid"], valid.labels, labels), figures(r["test"], test.labels, labels)) for r in runs]
        mean = lambda xs: statistics.mean(xs)  # noqa: E731
        rows.append(
            (
                variant,
                "1",
                mean(s[0][0] for s in single),
                mean(s[0][1] for s in single),
                mean(s[1][0] for s in single),
                mean(s[1][1] for s in single),
                mean(r["seconds"] for r in runs),
            )
        )
        if len(runs) > 1:
            ens = lambda split, runs=runs: mean_probabilities([r[split] for r in runs])  # noqa: E731
            v, t = figures(ens("valid"), valid.labels, labels), figures(ens("test"), test.labels, labels)
            rows.append((variant, f"{len(runs)} (seeds 0–{len(runs) - 1})", *v, *t, sum(r["seconds"] for r in runs)))
    print()
    print("| variant | models | valid acc | valid macro-F1 | test acc | test macro-F1 | train s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for variant, members, va, vf, ta, tf, secs in rows:
        print(f"| {variant} | {members} | {va:.4f} | {vf:.4f} | {ta:.4f} | {tf:.4f} | {secs:.0f} |")
    if real:
        print_both(per_language, labels)
    best = max(rows, key=lambda r: r[3] + r[2])
    print(f"\nbest on validation (accuracy + macro-F1): {best[0]}, {best[1]} model(s)")
    print(f"the `best` preset: {PRESETS['best'].description if 'best' in PRESETS else '(not defined)'}")


if __name__ == "__main__":
    main()
