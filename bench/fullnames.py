"""Benchmark sets of full names (issue 23, item 5), their exclude lists, the validation pairs, and their scores.

    python bench/fullnames.py build --out fullnames/ [--first-corpus first.parquet --surname-corpus corpus.parquet]
    python bench/fullnames.py score --sets fullnames/ --first-model first.safetensors [--surname-model M]
    python bench/fullnames.py bound --sets fullnames/ --first-model first.safetensors [--surname-weights 0.5,1,...]

``build`` writes, under ``--out``:

- ``faker.tsv``: (a) Faker's full names of the locales of the 18 languages, as each locale's own name formats pair
  a first name with a surname (formats with a prefix, suffix, middle name or double surname left out), written as
  the locale writes them (``佐藤 太郎``, ``张伟``, ``김민준``); columns ``name, language, first, last, locale``;
- ``corpus-pairs.tsv``: (b) with both corpora, a held-out first name and a held-out surname of the same language
  (both scored: top language >= the corpus's label share), drawn at random: independent by construction, so they
  flatter a combination that assumes independence (reported second);
- ``exclude-first.txt``, ``exclude-surname.txt``: every first name / surname of set (a), raw and as the readers
  read them (a first name whole, a surname with its family-name spelling), for ``nameorigin corpus --exclude`` and
  ``nameorigin train --exclude``; set (b)'s names need none: the corpora hold them out of training by a hash of
  the name (excluding them would take them out of the held-out part too);
- ``valid-pairs.tsv``: VALIDATION (never held-out) first + surname pairs of the same language, for fitting the
  combination's weights (``fit_combination``).

``score`` reads the sets and scores, per language: surname alone, first name alone, and combined. ``bound``
scores the combined answer on each set for every pair of weights of a grid (the stored temperature kept) and
prints the best: an oracle fitted on the benchmark itself, so a bound on what refitting the combination's
weights could reach, never weights to ship.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

from nameorigin import corpus, fullname, text

#: Faker locales of the 18 languages (Scottish has none of its own: en_GB is English's).
LOCALES = {
    "ar_AA": "Arabic",
    "ar_SA": "Arabic",
    "ar_EG": "Arabic",
    "zh_CN": "Chinese",
    "zh_TW": "Chinese",
    "cs_CZ": "Czech",
    "nl_NL": "Dutch",
    "en_GB": "English",
    "fr_FR": "French",
    "de_DE": "German",
    "el_GR": "Greek",
    "en_IE": "Irish",
    "it_IT": "Italian",
    "ja_JP": "Japanese",
    "ko_KR": "Korean",
    "pl_PL": "Polish",
    "pt_PT": "Portuguese",
    "pt_BR": "Portuguese",
    "ru_RU": "Russian",
    "es_ES": "Spanish",
    "es_MX": "Spanish",
    "vi_VN": "Vietnamese",
}
_TOKEN = re.compile(r"\{\{(\w+)\}\}")
COLUMNS = ("name", "language", "first", "last", "locale")


def _plain_formats(fake) -> list[str]:
    """The locale's name formats that pair exactly one first name with one surname, nothing else."""
    person = next(p for p in fake.providers if type(p).__module__.startswith("faker.providers.person"))
    formats = list(person.formats)  # a tuple, a list, or a dict of weights
    out = []
    for f in formats:
        tokens = _TOKEN.findall(f)
        rest = _TOKEN.sub("", f).strip()
        firsts = [t for t in tokens if t.startswith("first_name")]
        lasts = [t for t in tokens if t.startswith("last_name")]
        if len(tokens) == 2 and len(firsts) == 1 and len(lasts) == 1 and rest in ("", ","):
            out.append(f)
    if not out:  # ru_RU writes every name with a patronymic: its first name and surname, in its order
        for f in formats:
            kept = [t for t in _TOKEN.findall(f) if t.startswith(("first_name", "last_name"))]
            if len(kept) == 2 and kept[0] != kept[1] and not _TOKEN.sub("", f).strip(" ,"):
                out.append(" ".join("{{" + t + "}}" for t in kept))
    return sorted(set(out))


def faker_names(per_locale: int, seed: int = 0) -> list[dict]:
    """(a): ``per_locale`` distinct full names of each locale of :data:`LOCALES`, seeded."""
    from faker import Faker

    rows = []
    for locale, language in LOCALES.items():
        fake = Faker(locale)
        fake.seed_instance(seed)
        formats = _plain_formats(fake)
        if not formats:
            print(f"{locale}: no plain first-name + surname format; skipped", file=sys.stderr)
            continue
        seen: set[str] = set()
        for _ in range(per_locale * 20):
            if len(seen) >= per_locale:
                break
            f = fake.random_element(formats)
            first_t, last_t = (t for t in sorted(_TOKEN.findall(f), key=lambda t: not t.startswith("first")))
            first, last = getattr(fake, first_t)(), getattr(fake, last_t)()
            name = f.replace("{{" + first_t + "}}", first).replace("{{" + last_t + "}}", last)
            if name in seen:
                continue
            seen.add(name)
            rows.append({"name": name, "language": language, "first": first, "last": last, "locale": locale})
    return rows


def corpus_pairs(first: corpus.Corpus, surname: corpus.Corpus, split: str, per_language: int, seed: int) -> list[dict]:
    """(b) for ``split`` ``held-out``, the fitting pairs for ``valid``: per language covered by both corpora,
    ``per_language`` pairs of a scored first name and a scored surname of that language, drawn at random."""
    rng = random.Random(seed)
    firsts, lasts = defaultdict(list), defaultdict(list)
    for n, lang in first.scored_pairs(split):
        firsts[lang].append(n)
    for n, lang in surname.scored_pairs(split):
        lasts[lang].append(n)
    rows = []
    for lang in sorted(firsts.keys() & lasts.keys()):
        for _ in range(per_language):
            f, s = rng.choice(firsts[lang]), rng.choice(lasts[lang])
            rows.append({"name": f"{f} {s}", "language": lang, "first": f, "last": s, "locale": f"corpus-{split}"})
    return rows


def reading_forms(name: str, *, family: bool) -> set[str]:
    """``name`` and every reading the corpus could have stored it under (Han: both readers)."""
    forms = {name}
    if text.script_of(name) in {"Han", "Kana", "Hangul"}:
        for japanese in (True, False):
            try:
                forms.add(text.read_part(name, japanese=japanese, family=family))
            except text.ReaderMissing as e:
                raise SystemExit(str(e)) from None
    else:
        forms.add(text.fold(name, 2))
    return {f for f in forms if f}


def write_tsv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def cmd_build(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fake = faker_names(args.per_locale, args.seed)
    write_tsv(out / "faker.tsv", fake)
    print(f"{out / 'faker.tsv'}: {len(fake)} full names of {len({r['locale'] for r in fake})} Faker locales")
    if args.first_corpus and args.surname_corpus:
        first, surname = corpus.read(args.first_corpus), corpus.read(args.surname_corpus)
        held = corpus_pairs(first, surname, "held-out", args.per_language, args.seed)
        write_tsv(out / "corpus-pairs.tsv", held)
        valid = corpus_pairs(first, surname, "valid", args.per_language, args.seed)
        write_tsv(out / "valid-pairs.tsv", valid)
        print(
            f"{out / 'corpus-pairs.tsv'}: {len(held)} held-out pairs; {out / 'valid-pairs.tsv'}: {len(valid)} "
            f"validation pairs ({len({r['language'] for r in held})} languages)"
        )
    for part, column, family in (("first", "first", False), ("surname", "last", True)):
        names = sorted({f for r in fake for f in reading_forms(r[column], family=family)})
        (out / f"exclude-{part}.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
        print(f"{out / f'exclude-{part}.txt'}: {len(names)} names (raw and as read) to keep out of training")


# ------------------------------------------------------------------------------------------------ scoring


def combined_predictions(rows: list[dict], surname_model, first_model) -> list[str | None]:
    """The combined answer's top language for each row: the whole name as the locale writes it (``name``),
    parsed and read by ``Predictor.predict(names, name_type="full")`` of the pair, with the weights that
    ``nameorigin combine`` stored in the first-name checkpoint (weights 1 when it holds none or was fitted with
    another surname model)."""
    pair = surname_model.with_first(first_model)
    return _top(pair.predict([r["name"] for r in rows], name_type="full"))


def combined_coverage(rows: list[dict], surname_model, first_model, coverage: float = 0.9) -> tuple[float, float]:
    """The combined answers' prediction sets at ``coverage`` (the surname model's conformal calibration applied
    to the combined probabilities): the share that holds the true language, and their mean size."""
    pair = surname_model.with_first(first_model)
    results = pair.predict([r["name"] for r in rows], top=1, name_type="full", coverage=coverage)
    have = [(r, x) for r, x in zip(rows, results, strict=True) if x.set is not None]
    if not have:
        return float("nan"), float("nan")
    held = sum(r["language"] in x.set for r, x in have) / len(have)
    return round(held, 4), round(sum(len(x.set) for _, x in have) / len(have), 2)


def _top(results) -> list[str | None]:
    return [r.predictions[0]["language"] if r.predictions else None for r in results]


def part_predictions(predictor, names: list[str], *, family: bool) -> list[str | None]:
    """Each name's top language as one part of a full name, when the model folds with the readers (scheme 2):
    a family name written in a script of :data:`nameorigin.fullname.SCRIPT_LANGUAGES` (Han, kana, Hangul,
    Greek, Cyrillic, Arabic) as ``predict`` answers it alone by default (``auto``: read by its reader, Han both
    ways with the family-name tables first, answered among its script's languages); a given name in Han, kana
    or Hangul read whole as a given name (:func:`.text.read_part`), pure Han both ways, keeping the reading
    whose own language the model finds likelier (P(Japanese | the Japanese reading) against P(Chinese | the
    Chinese one)), answered among its script's languages; every other name (and every name for a model of
    scheme 1) read whole as ``predict --name-type surname`` reads it."""
    if predictor.fold_scheme < 2:
        return _top(predictor.predict(names, name_type="surname"))
    out = _top(predictor.predict(names, name_type="surname"))  # every other name as predict folds it
    scripts = [text.letters_script(n) for n in names]
    if family:
        native = [i for i, s in enumerate(scripts) if s in fullname.SCRIPT_LANGUAGES]
        for i, answer in zip(native, _top(predictor.predict([names[i] for i in native])), strict=True):
            out[i] = answer
        return out
    for i in (i for i, s in enumerate(scripts) if s in {"Han", "Kana", "Hangul"}):
        script = scripts[i]
        ways = [(True, "Japanese")] if script == "Kana" else [(False, "Korean")] if script == "Hangul" else []
        ways = ways or [(True, "Japanese"), (False, "Chinese")]
        allowed = [lang for lang in fullname.SCRIPT_LANGUAGES[script] if lang in predictor.labels]
        best, best_p = None, -1.0
        for japanese, own in ways:
            read = text.read_part(names[i], japanese=japanese, family=False)
            [r] = predictor.predict([read], top=len(predictor.labels), name_type="surname")
            probs = {x["language"]: x["probability"] for x in r.predictions}
            if r.predictions and probs.get(own, 0.0) > best_p:
                best, best_p = max(allowed or probs, key=lambda lang: probs.get(lang, 0.0)), probs.get(own, 0.0)
        out[i] = best
    return out


def score_rows(rows: list[dict], surname_model, first_model) -> dict:
    """Accuracy per language and over all of surname alone, first name alone and combined."""
    columns = {
        "surname": part_predictions(surname_model, [r["last"] for r in rows], family=True),
        "first": part_predictions(first_model, [r["first"] for r in rows], family=False),
        "combined": combined_predictions(rows, surname_model, first_model),
    }
    report: dict = {"n": len(rows), "all": {}, "per_language": {}}
    report["set_coverage_0.9"], report["set_size_0.9"] = combined_coverage(rows, surname_model, first_model)
    by_lang = defaultdict(list)
    for i, r in enumerate(rows):
        by_lang[r["language"]].append(i)
    for col, preds in columns.items():
        if all(p is None for p in preds):
            report["all"][col] = None
            continue
        report["all"][col] = round(sum(p == r["language"] for p, r in zip(preds, rows, strict=True)) / len(rows), 4)
        for lang, idx in by_lang.items():
            hit = sum(preds[i] == lang for i in idx) / len(idx)
            report["per_language"].setdefault(lang, {"n": len(idx)})[col] = round(hit, 4)
    return report


def _figure(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_table(title: str, report: dict) -> None:
    print(f"\n{title} ({report['n']} names)\n")
    print("| language | n | surname alone | first name alone | combined |\n| --- | --- | --- | --- | --- |")
    for lang, row in sorted(report["per_language"].items()):
        print(
            f"| {lang} | {row['n']} | {_figure(row.get('surname'))} | {_figure(row.get('first'))} | "
            f"{_figure(row.get('combined'))} |"
        )
    a = report["all"]
    print(f"| **all** | {report['n']} | {_figure(a['surname'])} | {_figure(a['first'])} | {_figure(a['combined'])} |")
    print(
        f"\ncombined answers' sets at coverage 0.9: {report['set_coverage_0.9']:.3f} hold the true language, "
        f"mean size {report['set_size_0.9']:.2f}"
    )


def cmd_score(args) -> None:
    from nameorigin.predict import Predictor

    surname_model = Predictor.load(args.surname_model) if args.surname_model else Predictor.load()
    first_model = Predictor.load(args.first_model)
    sets = Path(args.sets)
    out = {}
    for part, title in (("faker", "(a) Faker's full names"), ("corpus-pairs", "(b) held-out corpus pairs")):
        path = sets / f"{part}.tsv"
        if path.is_file():
            out[part] = score_rows(read_tsv(path), surname_model, first_model)
            print_table(title, out[part])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


def weight_grid(rows: list[dict], surname_model, first_model, surname_weights, first_weights) -> dict:
    """The combined answers' accuracy on ``rows`` for each pair of weights (surname, first name) of the grid, the
    other settings of the stored combination kept: ``{(surname, first): accuracy}``."""
    import dataclasses
    import itertools

    pair = surname_model.with_first(first_model)
    names = [r["name"] for r in rows]
    out = {}
    for ws, wf in itertools.product(surname_weights, first_weights):
        pair.combination = dataclasses.replace(pair.combination, weights={"surname": ws, "first": wf})
        got = _top(pair.predict(names, name_type="full"))
        out[(ws, wf)] = round(sum(g == r["language"] for g, r in zip(got, rows, strict=True)) / len(rows), 4)
    return out


def weights(text: str) -> list[float]:
    """``--surname-weights`` / ``--first-weights``: comma-separated numbers >= 0."""
    try:
        out = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 0.5,1,2") from None
    if not all(w >= 0 and w < float("inf") for w in out):
        raise argparse.ArgumentTypeError(f"{text!r}: every weight must be a finite number >= 0")
    return out


def cmd_bound(args) -> None:
    """The best combined accuracy any weights of a grid give on each set, scored on the set itself: an oracle,
    so a bound on what refitting the combination can reach, not a model to ship."""
    from nameorigin.predict import Predictor

    sets = Path(args.sets)
    found = [part for part in ("faker", "corpus-pairs") if (sets / f"{part}.tsv").is_file()]
    if not found:
        raise ValueError(f"{sets}: holds neither faker.tsv nor corpus-pairs.tsv (bench/fullnames.py build writes them)")
    surname_model = Predictor.load(args.surname_model) if args.surname_model else Predictor.load()
    first_model = Predictor.load(args.first_model)
    fitted = surname_model.with_first(first_model).combination.weights
    grid_s, grid_f = args.surname_weights, args.first_weights
    for part in found:
        rows = read_tsv(sets / f"{part}.tsv")
        grid = weight_grid(rows, surname_model, first_model, grid_s, grid_f)
        at_fitted = weight_grid(rows, surname_model, first_model, [fitted["surname"]], [fitted["first"]])
        (ws, wf), best = max(grid.items(), key=lambda kv: kv[1])
        print(f"\n{part} ({len(rows)} names): the stored weights (surname {fitted['surname']:.3f}, first "
              f"{fitted['first']:.3f}) {next(iter(at_fitted.values())):.4f}; the best of the grid {best:.4f} "
              f"(surname {ws:g}, first {wf:g})")  # fmt: skip
        print("surname \\ first | " + " | ".join(f"{w:g}" for w in grid_f))
        for w in grid_s:
            print(f"{w:g} | " + " | ".join(f"{grid[(w, f)]:.3f}" for f in grid_f))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the sets, the exclude lists and the validation pairs")
    b.add_argument("--out", required=True)
    b.add_argument("--per-locale", type=int, default=100, help="Faker full names a locale (default 100)")
    b.add_argument("--first-corpus", help="the first-name corpus (nameorigin corpus --kind first)")
    b.add_argument("--surname-corpus", help="the surname corpus (nameorigin corpus)")
    b.add_argument("--per-language", type=int, default=100, help="corpus pairs a language (default 100)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_build)
    s = sub.add_parser("score", help="surname alone, first name alone and combined, per language")
    s.add_argument("--sets", required=True, help="the folder build wrote")
    s.add_argument("--first-model", required=True)
    s.add_argument("--surname-model", help="default: the shipped surname model")
    s.add_argument("--json", help="also write the figures as JSON here")
    s.set_defaults(func=cmd_score)
    g = sub.add_parser("bound", help="the best combined accuracy over a grid of weights, on each set itself")
    g.add_argument("--sets", required=True, help="the folder build wrote")
    g.add_argument("--first-model", required=True)
    g.add_argument("--surname-model", help="default: the shipped surname model")
    g.add_argument(
        "--surname-weights", type=weights, default="0.5,1,1.5,2,3", help="comma-separated (default: %(default)s)"
    )
    g.add_argument(
        "--first-weights", type=weights, default="0,0.25,0.5,1,1.5", help="comma-separated (default: %(default)s)"
    )
    g.set_defaults(func=cmd_bound)
    args = ap.parse_args()
    if args.func is cmd_bound:
        from nameorigin.checkpoint import CheckpointError

        try:
            return cmd_bound(args)
        except (CheckpointError, OSError, ValueError) as e:  # a model or a set missing, unreadable or odd
            ap.error(str(e))
    args.func(args)


if __name__ == "__main__":
    main()
