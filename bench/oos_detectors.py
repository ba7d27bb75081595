"""Out-of-scope detectors side by side, on a corpus-trained model's own fitting names and the held-out countries.

    python bench/oos_detectors.py --data $NAMEORIGIN_DATA --corpus corpus.parquet --benchmark real-names.tsv \
        --out-of-scope real-oos.txt [--model default.safetensors] [--exclude FILE...] [--split-seed 0]

The names the model's trust layer was fitted on are rebuilt as training built them (``--data`` split 0.9 / 0.1
with ``--split-seed``, the corpus leak-guarded with ``--exclude``): in scope, the labelled and the corpus's
validation names; out of scope, Faker's fitting half and the corpus's out-of-scope names of the countries not held
out. Every detector is fitted on those (the two classes weighing alike) and scored by AUROC on ``--benchmark``
(in scope: the corpus's held-out real names) against ``--out-of-scope`` (real names of the held-out countries):

- ``stored``: the checkpoint's own detector (its logistic regression over 7 features);
- ``7 features, LR`` / ``boosted``: scikit-learn's logistic regression / ``HistGradientBoostingClassifier`` on the
  same 7 features (the out-of-scope names' background feature cross-fitted, as training does);
- ``27 features, LR`` / ``boosted``: those and 20 more: each language's trigram surprise, the background's against
  all languages', the name's length and the second probability;
- ``n-gram in/out``: a TF-IDF character 1-4-gram logistic regression of the training names in scope (labelled and
  corpus) against the out-of-scope names, alone.

For a model that ships no corpus-fitted detector this says nothing; the model card quotes its output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the labelled data the model trained on")
    ap.add_argument("--corpus", required=True, help="the corpus it trained with")
    ap.add_argument("--benchmark", required=True, help="in-scope held-out names (name,language)")
    ap.add_argument("--out-of-scope", required=True, help="out-of-scope names of the held-out countries")
    ap.add_argument("--model", help="checkpoint (default: the shipped model)")
    ap.add_argument("--exclude", nargs="*", default=[], help="the names kept out of its training (--exclude)")
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args()
    from nameorigin.checkpoint import CheckpointError
    from nameorigin.errors import InputError

    try:
        compare(args)
    except (InputError, CheckpointError, OSError) as e:  # a file missing, unreadable or of another shape
        ap.error(str(e))


def compare(args) -> None:
    """Fit each detector and print the table (see the module's docstring)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from nameorigin import api, data, trust
    from nameorigin import corpus as cm
    from nameorigin.data import encode_names
    from nameorigin.errors import InputError
    from nameorigin.evaluation import auroc
    from nameorigin.models import batched_log_probs
    from nameorigin.predict import Predictor
    from nameorigin.text import fold

    for flag, path in (("--benchmark", args.benchmark), ("--out-of-scope", args.out_of_scope)):
        if not Path(path).is_file():
            raise InputError(f"{flag} {path}: no such file")
    pred = Predictor.load(args.model) if args.model else Predictor.load()
    layer, labels = pred.trust, pred.labels
    if layer.oos is None:
        raise InputError(f"{args.model or 'the shipped model'}: no out-of-scope detector to compare with")
    n = len(labels)
    parts, _ = api._training_split(args.data, (0.9, 0.1, 0.0), args.split_seed)
    real = cm.for_training(
        args.corpus,
        parts.train,
        labels,
        labelled_held=[name for name, _ in parts.valid],
        exclude=cm.read_exclude(args.exclude),
    )
    in_names = [name for name, _ in parts.valid] + [name for name, lang in real.part.valid if lang in labels]
    config = trust.TrustConfig()
    seen = [name for name, _ in real.train + parts.valid]  # as training saw them: the guarded training names
    faker = trust.out_of_scope_names(seen, part="fit", fit_share=config.oos_fit_share, locales=config.oos_locales)
    out_names = trust.with_real_out_of_scope(faker, real.out_of_scope, seen)
    bench = [fold(name) for name, _ in data.read_labelled(args.benchmark)]
    held = [
        fold(line.strip()) for line in Path(args.out_of_scope).read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    print(f"fitted on {len(in_names)} in-scope and {len(out_names)} out-of-scope names; scored on {len(bench)} "
          f"in-scope and {len(held)} out-of-scope names")  # fmt: skip

    def probs(names):
        tokens, lengths = encode_names(names)
        return layer.probabilities(batched_log_probs(pred.model, tokens, lengths)[0])

    p_in, p_out, p_bench, p_held = probs(in_names), probs(out_names), probs(bench), probs(held)
    results = {"stored": auroc(layer.oos.score(p_bench, bench), layer.oos.score(p_held, held))}

    detector = layer.oos
    k3 = detector.columns.shape[0]
    own = detector.keys // k3 < n  # the training names' trigrams (the background's are language n)
    keys, counts = detector.keys[own], detector.counts[own]

    def detector_with(background):
        return trust.OutOfScope.unfitted(keys, counts, n, background, config=config)

    def features(d, p, names):
        """The detector's 7 features, then 20 more."""
        mean, worst, length = d.surprise(names)  # mean: (n + 2, N)
        extra = np.column_stack([mean[:n].T, mean[-1] - mean[-2], length, np.sort(p, 1)[:, -2]])
        return np.column_stack([d.features_from(mean, worst, p), extra])

    full = detector_with(out_names)
    fold_of = (np.array([trust.hash_share(x) for x in out_names]) * config.folds * 1000).astype(int) % config.folds
    x_out = None
    for k in range(config.folds):  # cross-fitted: each fold's background leaves that fold out
        mine = np.flatnonzero(fold_of == k)
        if not len(mine):
            continue
        rest = [x for x, g in zip(out_names, fold_of, strict=True) if g != k]
        got = features(detector_with(rest), p_out[mine], [out_names[i] for i in mine])
        x_out = np.zeros((len(out_names), got.shape[1])) if x_out is None else x_out
        x_out[mine] = got
    x_in, x_bench, x_held = features(full, p_in, in_names), features(full, p_bench, bench), features(full, p_held, held)
    x = np.vstack([x_in, x_out])
    y = np.r_[np.zeros(len(x_in)), np.ones(len(x_out))]
    w = np.where(y == 1, 0.5 / len(x_out), 0.5 / len(x_in)) * len(y)
    for tag, cols in (("7 features", slice(0, 7)), ("27 features", slice(None))):
        scale = StandardScaler().fit(x[:, cols])
        lr = LogisticRegression(max_iter=2000).fit(scale.transform(x[:, cols]), y, sample_weight=w)
        results[f"{tag}, LR"] = auroc(
            lr.predict_proba(scale.transform(x_bench[:, cols]))[:, 1],
            lr.predict_proba(scale.transform(x_held[:, cols]))[:, 1],
        )
        boosted = HistGradientBoostingClassifier(max_iter=300, random_state=0).fit(x[:, cols], y, sample_weight=w)
        results[f"{tag}, boosted"] = auroc(
            boosted.predict_proba(x_bench[:, cols])[:, 1], boosted.predict_proba(x_held[:, cols])[:, 1]
        )
    train_in = [name for name, _ in real.train] + [name for name, _ in real.part.top_pairs(labels)]
    names = train_in + out_names
    y = np.r_[np.zeros(len(train_in)), np.ones(len(out_names))]
    w = np.where(y == 1, 0.5 / len(out_names), 0.5 / len(train_in)) * len(y)
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, sublinear_tf=True, max_features=200_000)
    lr = LogisticRegression(max_iter=3000).fit(vec.fit_transform(names), y, sample_weight=w)
    results["n-gram in/out"] = auroc(
        lr.predict_proba(vec.transform(bench))[:, 1], lr.predict_proba(vec.transform(held))[:, 1]
    )
    print("| detector | out-of-scope AUROC |\n| --- | ---: |")
    for tag, value in results.items():
        print(f"| {tag} | {value:.4f} |")


if __name__ == "__main__":
    main()
