"""Can an answer be trusted? The trust layer against the top-probability baseline, on held-out names.

    python bench/trust.py [--data DIR] [--preset bundled] [--epochs N] [--save model.safetensors]
    python bench/trust.py --model model.safetensors      # a checkpoint trained on the same 80 %

The data is split leak-free 80/20 (``nameorigin split --split 0.8,0,0.2``, seed ``--split-seed``); the 80 % is
split again 0.9/0.1 into train and validation, as ``nameorigin train --data train.tsv --split 0.9,0.1,0`` does,
and the model is trained on it with ``--preset`` and calibrated on its validation names only. ``--model`` takes
a checkpoint trained that way instead (``nameorigin split --split 0.8,0,0.2 --out s`` then ``nameorigin train
--data s/train.tsv --split 0.9,0.1,0 --preset bundled``). Everything reported is measured on the held-out 20 %
and on the held-out half of the out-of-scope names (Faker surnames of :data:`nameorigin.trust.OOS_LOCALES`,
split by name hash; the detector was fitted on the other half), side by side with the top-probability baseline:

* empirical coverage and mean set size at 0.8 / 0.9 / 0.95 (baseline: the most probable languages until their
  probability adds up to the coverage);
* accuracy on the 80 % most confident names;
* out-of-scope AUROC (baseline: 1 - top probability);
* abstention on out-of-scope and in-scope names with the default thresholds (baseline: the top-probability
  threshold alone, set aside the same share of validation names);
* ``--prior auto`` (EM) on the held-out names and on a sample of them shifted towards English and Spanish:
  accuracy and the distance of the estimated mix from the true one, EM against the model's own prior (the
  layer) and against the training mix (the baseline: what the layer did before it recorded the model's prior);
* the share of emoji, symbol, digit and punctuation strings refused as unreadable (baseline: transliterating
  every character, as nameorigin did before);
* and, as a check of how the detector does on languages it never saw, the out-of-scope AUROC and abstention on
  all names of ``--unseen`` locales after fitting the detector again without them.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np
import torch
from anyascii import anyascii

from nameorigin import checkpoint, data, trust
from nameorigin.evaluation import auroc, selective_accuracy, set_coverage
from nameorigin.models import batched_log_probs
from nameorigin.predict import Predictor
from nameorigin.text import ALPHABET, BadName, fold_checked
from nameorigin.training import fit, resolve_settings

TARGETS = {
    "coverage 0.9": "0.88-0.93",
    "set size 0.9": "<= 1.3",
    "coverage 0.95": ">= 0.94",
    "top-80% accuracy": ">= 0.95",
    "OOS AUROC": ">= 0.90",
    "abstain OOS": ">= 0.60",
    "abstain in-scope": "<= 0.10",
    "refused": "1.00",
}


def not_names(n: int = 400, seed: int = 0) -> list[str]:
    """Strings that are not names: emoji, symbols, digits (ASCII and other scripts'), punctuation only."""
    rng = random.Random(seed)
    emoji = [chr(c) for c in range(0x1F600, 0x1F650)] + [chr(c) for c in range(0x1F300, 0x1F360)]
    symbols = [chr(c) for c in range(0x2200, 0x2260)] + list("★☆©®™§¶†‡•※€£¥₹♠♣♥♦♪♫☀☂☃")
    digits = list("0123456789") + [chr(c) for c in range(0x0660, 0x066A)] + [chr(c) for c in range(0x0966, 0x0970)]
    punctuation = list("!?-_/\\()[]{}<>@#$%^&*+=~|\"'.,;:…—–«»¿¡“”‘’")
    out = []
    for pool in (emoji, symbols, digits, punctuation):
        out += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 6))) for _ in range(n // 4)]
    return out


def refused(strings: list[str]) -> tuple[float, float]:
    """Share refused by fold_checked, and by the earlier fold that transliterated every character."""

    def now(s: str) -> bool:
        try:
            fold_checked(s)
            return False
        except BadName:
            return True

    before = [not "".join(c for c in anyascii(s) if c in ALPHABET).strip() for s in strings]
    return float(np.mean([now(s) for s in strings])), float(np.mean(before))


def naive_sets(probs: np.ndarray, coverage: float) -> np.ndarray:
    """The most probable languages until their probabilities add up to ``coverage`` (N, C)."""
    order = np.argsort(-probs, axis=1)
    cumulative = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)
    keep_sorted = (cumulative - np.take_along_axis(probs, order, axis=1)) < coverage
    sets = np.zeros_like(probs, dtype=bool)
    np.put_along_axis(sets, order, keep_sorted, axis=1)
    return sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="labelled names (default: $NAMEORIGIN_DATA, else the tutorial's archive)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--preset", default="bundled", help="training preset (default: bundled)")
    p.add_argument("--epochs", type=int, help="override the preset's epochs (a cheaper check)")
    p.add_argument("--model", help="a checkpoint trained on this split's 80 %% (skips training)")
    p.add_argument("--recalibrate", action="store_true", help="with --model: fit its trust layer again here")
    p.add_argument("--save", help="save the model trained here (with its trust layer)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--unseen",
        default="fi_FI,tr_TR,yo_NG,ka_GE,id_ID",
        help="locales left out of a second fit of the detector, to report on languages it never saw ('' to skip)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = data.dedupe(data.read_labelled(data.resolve_data(args.data)))
    outer = data.split(pairs, (0.8, 0.0, 0.2), seed=args.split_seed)
    inner = data.split(outer.train, (0.9, 0.1, 0.0), seed=args.split_seed)
    labels = data.languages(pairs)
    if args.model:
        predictor = Predictor.load(args.model)
        model, layer = predictor.model, predictor.trust
        if list(predictor.labels) != labels:
            sys.exit(f"{args.model}: trained on other languages than {args.data or 'the data'}'s")
        if args.recalibrate or not layer.complete:  # fit the trust layer again on this split's validation
            layer = trust.calibrate(model, labels, inner.train, inner.valid)
        setting = f"checkpoint {args.model}" + (" (trust layer fitted again)" if args.recalibrate else "")
    else:
        train = {"epochs": args.epochs} if args.epochs else {}
        settings = resolve_settings(args.preset, train=train)
        started = time.perf_counter()
        model, _, used = fit(settings, inner.train, data.encode_pairs(inner.valid, labels), labels)
        layer = trust.calibrate(model, labels, used, inner.valid)
        setting = (
            f"--preset {args.preset}"
            + (f" --epochs {args.epochs}" if args.epochs else "")
            + f", trained and calibrated in {time.perf_counter() - started:.0f}s"
        )
    if layer.oos is None:
        sys.exit("no out-of-scope detector (is Faker installed?)")
    if args.save:
        checkpoint.save(args.save, model, labels, {"temperature": layer.temperature}, trust=layer)

    test = data.encode_pairs(outer.test, labels)
    lp, _ = batched_log_probs(model, test.tokens, test.lengths)
    test_names = [n for n, _ in outer.test]
    truth = test.labels.numpy()
    oos_names = trust.out_of_scope_names([n for n, _ in outer.train], part="held-out")
    tokens, lengths = data.encode_names(oos_names)
    oos_lp, _ = batched_log_probs(model, tokens, lengths)

    rows: list[tuple[str, str, str]] = []  # figure, trust layer, baseline
    probs = layer.probabilities(lp)
    for c in trust.COVERAGES:
        ours = set_coverage(layer.apply(lp, test_names, coverage=c).sets, truth, labels)
        base = set_coverage(naive_sets(probs, c), truth, labels)
        rows.append((f"coverage {c}", f"{ours['coverage']:.3f}", f"{base['coverage']:.3f}"))
        rows.append((f"set size {c}", f"{ours['mean_size']:.3f}", f"{base['mean_size']:.3f}"))
    correct = probs.argmax(1) == truth
    result = layer.apply(lp, test_names)
    top80 = selective_accuracy(probs.max(1), correct, 0.8)  # temperature keeps the order: the same either way
    rows.append(("top-80% accuracy", f"{top80:.3f}", f"{top80:.3f}"))
    combined = probs.max(1) * (1 - result.out_of_scope)
    rows.append(
        ("top-80% accuracy, ranked by top p x (1 - OOS)", f"{selective_accuracy(combined, correct, 0.8):.3f}", "")
    )
    rows.append(("accuracy, all held-out names", f"{correct.mean():.3f}", f"{correct.mean():.3f}"))
    oos_result = layer.apply(oos_lp, oos_names)
    oos_probs = layer.probabilities(oos_lp)
    rows.append(
        (
            "OOS AUROC",
            f"{auroc(result.out_of_scope, oos_result.out_of_scope):.3f}",
            f"{auroc(1 - probs.max(1), 1 - oos_probs.max(1)):.3f}",
        )
    )
    base_in = probs.max(1) < layer.min_confidence
    base_out = oos_probs.max(1) < layer.min_confidence
    rows.append(("abstain OOS", f"{oos_result.abstained.mean():.3f}", f"{base_out.mean():.3f}"))
    rows.append(("abstain in-scope", f"{result.abstained.mean():.3f}", f"{base_in.mean():.3f}"))
    # --prior auto: EM against the model's own prior (the layer) and against the training mix (as before)
    shift = np.ones(len(labels))  # a population of mostly English and Spanish names, few Russian ones
    for language, weight in (("Russian", 0.05), ("English", 2.0), ("Spanish", 10.0)):
        if language in labels:
            shift[labels.index(language)] = weight
    shifted = np.random.default_rng(0).random(len(truth)) < shift[truth] / shift.max()
    notes = []
    if layer.model_prior is not None:
        ratio = layer.model_prior / layer.train_prior
        notes.append(
            "the model's own prior against the training mix, most over-said languages: "
            + ", ".join(
                f"{labels[i]} {layer.model_prior[i]:.3f} vs {layer.train_prior[i]:.3f}" for i in np.argsort(-ratio)[:3]
            )
        )
    for label, keep in (
        ("held-out names", np.ones(len(truth), dtype=bool)),
        (f"shifted sample ({int(shifted.sum())} names)", shifted),
    ):
        sub, sub_truth = probs[keep], truth[keep]
        true_mix = np.bincount(sub_truth, minlength=len(labels)) / len(sub_truth)
        auto = layer.apply(lp[keep], [n for n, k in zip(test_names, keep, strict=False) if k], prior="auto")
        old_mix = trust.estimate_prior(sub, layer.train_prior)
        old = trust.reweight(sub, layer.train_prior, old_mix)
        rows.append(
            (
                f"--prior auto: accuracy, {label}",
                f"{(auto.probabilities.argmax(1) == sub_truth).mean():.3f}",
                f"{(old.argmax(1) == sub_truth).mean():.3f} (EM against the training mix); "
                f"{(sub.argmax(1) == sub_truth).mean():.3f} (no prior)",
            )
        )
        if keep.all():
            notes.append(
                "EM against the training mix on the held-out names, its largest estimates: "
                + ", ".join(f"{labels[i]} {old_mix[i]:.3f} (true {true_mix[i]:.3f})" for i in np.argsort(-old_mix)[:4])
            )
        rows.append(
            (
                f"--prior auto: L1 from the true mix, {label}",
                f"{np.abs(auto.prior - true_mix).sum():.3f}",
                f"{np.abs(old_mix - true_mix).sum():.3f} (EM against the training mix)",
            )
        )
    now, before = refused(not_names())
    rows.append(("refused", f"{now:.3f}", f"{before:.3f} (before: transliterate all)"))
    unseen = [loc for loc in args.unseen.split(",") if loc]
    if unseen:  # how the detector does on languages it never saw in fitting: fit again without those locales
        config = trust.TrustConfig(oos_locales=tuple(loc for loc in trust.OOS_LOCALES if loc not in unseen))
        again = trust.calibrate(model, labels, inner.train, inner.valid, config=config)
        far = trust.out_of_scope_names([n for n, _ in outer.train], part="all", locales=unseen)
        tokens, lengths = data.encode_names(far)
        far_lp, _ = batched_log_probs(model, tokens, lengths)
        far_result, near_result = again.apply(far_lp, far), again.apply(lp, test_names)
        far_top = again.probabilities(far_lp).max(1)
        rows.append(
            (
                f"OOS AUROC, unseen locales ({len(far)} names)",
                f"{auroc(near_result.out_of_scope, far_result.out_of_scope):.3f}",
                f"{auroc(1 - probs.max(1), 1 - far_top):.3f}",
            )
        )
        rows.append(
            (
                "abstain OOS, unseen locales",
                f"{far_result.abstained.mean():.3f}",
                f"{(far_top < again.min_confidence).mean():.3f}",
            )
        )

    print(
        f"model: {setting}; conformal method {layer.conformal.method}; thresholds: min confidence "
        f"{layer.min_confidence:.3f}, max out-of-scope {layer.max_out_of_scope:.3f}"
    )
    print(
        f"held out: {len(test_names)} names of {len(labels)} languages; {len(oos_names)} out-of-scope names "
        f"(held-out half) of {len(trust.OOS_LOCALES)} Faker locales"
    )
    for note in notes:
        print(note)
    print()
    print("| figure | target | trust layer | top-probability baseline |")
    print("| --- | --- | --- | --- |")
    for figure, ours, base in rows:
        print(f"| {figure} | {TARGETS.get(figure, '')} | {ours} | {base} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
