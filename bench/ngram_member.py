"""How large the bundled model's n-gram member should be: sizes and n-gram lengths side by side, each mixed with
the same trained network.

    python bench/ngram_member.py --model model80.safetensors --train split80/train.tsv --test split80/test.tsv \
        --corpus corpus.parquet --benchmark real-names.tsv --exclude bench/fullnames-sets/exclude-surname.txt \
        [--sizes 15000,40000] [--ngrams 4,5]

``--model``: a mixed checkpoint whose first member is the network (``bench/bundle.py``'s 80 % twin, trained on
``--train`` with ``--split 0.9,0.1,0``); its network is kept as it is. For each size and longest n-gram, an
n-gram member is fitted as the ``bundled`` preset fits its own (``ngram-corpus`` with that vocabulary limit,
weights held as int8) on the same training names, the same corpus and the same leak guard, then mixed with the
network, weights and temperatures fitted on both validations as training fits them. Each row: the member alone
and the mixture, on the tutorial's held-out ``--test`` names (under the tutorial's own mix) and on the real
names of ``--benchmark`` under an even mix (each answer divided by the model's mean answer on validation), and
the member's stored size. The first row is the checkpoint's own n-gram member.
"""

from __future__ import annotations

import argparse
import time

import torch

from nameorigin import api, checkpoint, data, training
from nameorigin.evaluation import metrics
from nameorigin.models import batched_log_probs, stored_tensors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a mixed checkpoint: its first member is the network")
    ap.add_argument("--train", required=True, help="the labelled names it trained on (with --split 0.9,0.1,0)")
    ap.add_argument("--test", required=True, help="the tutorial's held-out names")
    ap.add_argument("--corpus", required=True, help="the corpus it trained with")
    ap.add_argument("--benchmark", required=True, help="held-out real names (nameorigin corpus --benchmark)")
    ap.add_argument("--exclude", nargs="*", default=[], help="names kept out of training, as it was trained")
    ap.add_argument("--sizes", default="15000,40000", help="vocabulary limits (default: %(default)s)")
    ap.add_argument("--ngrams", default="4,5", help="longest n-grams (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ck = checkpoint.load(args.model)
    labels = ck.labels
    if getattr(ck.model, "weights", None) is None or len(ck.model.members) != 2:
        raise SystemExit(f"{args.model}: not a mixed model (network + n-gram member)")
    network, own = ck.model.members[0], ck.model.members[1]
    settings = api.train_settings(preset="ngram-corpus")
    parts, _ = api._training_split(args.train, (0.9, 0.1, 0), 0)
    parts, real = api._corpus_step(settings, parts, labels, args.corpus, [args.test, *args.exclude])
    valid = data.encode_pairs(parts.valid, labels)
    second = training.corpus_validation(real.part, data.encode_pairs(parts.train, labels).labels, labels, "own")
    tutorial = data.encode_pairs(data.read_labelled(args.test), labels)
    bench = data.encode_pairs(data.read_labelled(args.benchmark), labels)

    def log_probs(model, names):
        return batched_log_probs(model, names.tokens, names.lengths)[0]

    def figures(model) -> list[str]:
        base = log_probs(model, valid).exp().mean(0)  # the model's own mix, divided out for an even one
        out = []
        for names, shift in ((tutorial, torch.zeros(len(labels))), (bench, -base.log())):
            m = metrics(names.labels, (log_probs(model, names) + shift).argmax(1), labels)
            out.append(f"{m['accuracy']:.4f} / {m['macro_f1_covered']:.4f}")
        return out

    def size(member) -> str:
        return f"{sum(t.numel() * t.element_size() for t in stored_tensors(member).values()) / 1e6:.2f}"

    print(
        "| member | n-grams | stored MB | alone: tutorial | alone: real names | mixed: tutorial | mixed: real names "
        "| weights (network, n-gram) | fit s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")

    def row(tag, member, seconds):
        mixed = training.mixed_ensemble([network, member], valid, len(labels), second_valid=second)
        w = ", ".join(f"{x:.2f}" for x in mixed.weights.tolist())
        cells = [tag, str(member.vocab.numel()), size(member), *figures(member), *figures(mixed), w, seconds]
        print("| " + " | ".join(cells) + " |", flush=True)

    c = own.config
    row(f"the checkpoint's own (1-{c.ngram}-grams{', int8' if c.int8 else ''})", own, "")
    for n in (int(x) for x in args.ngrams.split(",")):
        for vocab in (int(x) for x in args.sizes.split(",")):
            member_settings = api.train_settings(
                preset="ngram-corpus", vocab_limit=vocab, ngram=n, compact=True, int8=True
            )
            started = time.perf_counter()
            member, _, _, _ = api._train_step(
                member_settings,
                parts,
                labels,
                teacher=None,
                device="cpu",
                printer=None,
                progress=False,
                on_epoch=None,
                corpus=real.part,
            )
            row(f"1-{n}-grams, int8", member, f"{time.perf_counter() - started:.0f}")
    print(
        "\naccuracy / macro-F1 over the languages the names hold; tutorial: under its own mix (--prior training); "
        "real names: an even mix"
    )


if __name__ == "__main__":
    main()
