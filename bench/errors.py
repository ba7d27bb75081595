"""What a model gets wrong: the most confused language pairs on held-out names, and the names that carry
two (or more) labels in the data, which no model can get right both times.

    python bench/errors.py --model M.safetensors --test split80/test.tsv [--data NAMES] [--top 12]

Prints two Markdown tables. The first counts, over the held-out names, each (true, predicted) pair with
true != predicted, with its share of the true language's names; the second lists the folded names that
stand under more than one language in ``--data`` (default: $NAMEORIGIN_DATA), with their languages.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

from nameorigin import Predictor, data
from nameorigin.models import batched_log_probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint")
    ap.add_argument("--test", required=True, help="held-out labelled names")
    ap.add_argument("--data", help="all labelled names, for the names with two labels (default: $NAMEORIGIN_DATA)")
    ap.add_argument("--top", type=int, default=12, help="rows of each table")
    args = ap.parse_args()
    predictor = Predictor.load(args.model)
    labels = predictor.labels
    test = data.dedupe(data.read_labelled(args.test))
    encoded = data.encode_pairs(test, labels)
    predicted = batched_log_probs(predictor.model, encoded.tokens, encoded.lengths)[0].argmax(1)
    support = Counter(lang for _, lang in test)
    pairs = Counter(
        (labels[t], labels[p]) for t, p in zip(encoded.labels.tolist(), predicted.tolist(), strict=True) if t != p
    )
    print(f"{len(test)} held-out names, {sum(pairs.values())} wrong\n")
    print("| true | predicted | names | share of the true language's names |")
    print("| --- | --- | ---: | ---: |")
    for (t, p), n in pairs.most_common(args.top):
        print(f"| {t} | {p} | {n} | {n / support[t]:.1%} |")
    everything = data.dedupe(data.read_labelled(data.resolve_data(args.data)))
    by_name = defaultdict(set)
    for name, lang in everything:
        by_name[name].add(lang)
    multi = {n: sorted(langs) for n, langs in by_name.items() if len(langs) > 1}
    combos = Counter(" / ".join(langs) for langs in multi.values())
    print(f"\n{len(multi)} of {len(by_name)} distinct names carry more than one language\n")
    print("| languages | names | examples |")
    print("| --- | ---: | --- |")
    for combo, n in combos.most_common(args.top):
        examples = [name for name, langs in multi.items() if " / ".join(langs) == combo][:4]
        print(f"| {combo} | {n} | {', '.join(examples)} |")


if __name__ == "__main__":
    main()
