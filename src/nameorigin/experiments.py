"""The worksheet's comparisons: a grid of models x noise x seeds, tables, loss curves and a report."""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import data
from .atomic import atomic_text
from .data import noisy_copy
from .evaluation import metrics
from .models import REGISTRY, UnknownModel, batched_log_probs
from .training import fit, resolve_settings, validate

log = logging.getLogger(__name__)
BASELINE = "baseline"


@dataclass
class CompareConfig:
    models: list[str] = field(default_factory=lambda: ["rnn", "gru", "gru-attention"])
    noise: list[int] = field(default_factory=lambda: [0, 5])
    seeds: int = 1
    worksheet: bool = False
    epochs: int = 10  # batched trainer
    iters: int = 80000  # worksheet loop
    hidden: int | None = None  # default: 32 for the worksheet loop, the default preset's otherwise
    prune: int = 50  # worksheet loop only, as seed 000
    plot_every: int = 1000
    split_seed: int = 0


@dataclass
class RunResult:
    model: str
    noise: int
    seed: int
    train_seconds: float
    final_loss: float
    accuracy: float
    macro_f1: float
    noisy_accuracy: float
    noisy_macro_f1: float
    curve_x: list[float] = field(default_factory=list)
    curve_loss: list[float] = field(default_factory=list)
    attention: dict | None = None  # gru-attention: where the weight goes on held-out names

    def row(self) -> dict:
        d = asdict(self)
        for k in ("curve_x", "curve_loss", "attention"):
            d.pop(k)
        if self.attention:
            d.update({f"attention_{k}": v for k, v in self.attention.items()})
        return d


def attention_shares(model, clean: data.Encoded, noisy: data.Encoded) -> dict:
    """Mean attention on the appended punctuation, on the name's last letter, and on the final position."""
    _, att = batched_log_probs(model, noisy.tokens, noisy.lengths, with_attention=True)
    on_noise, on_last_letter, on_final, uniform = [], [], [], []
    for i, weights in enumerate(att):
        n = int(clean.lengths[i])
        on_noise.append(float(weights[n:].sum()))
        on_last_letter.append(float(weights[n - 1]))
        on_final.append(float(weights[-1]))
        uniform.append(1.0 / len(weights))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "on_noise": mean(on_noise),
        "on_last_letter": mean(on_last_letter),
        "on_final_position": mean(on_final),
        "uniform_share": mean(uniform),
    }


def _evaluate(predict, clean, noisy, labels) -> tuple[dict, dict]:
    return (metrics(clean.labels, predict(clean), labels), metrics(noisy.labels, predict(noisy), labels))


def check_models(models: list[str]) -> None:
    """Refuse a name that is neither a registry model nor ``baseline``, naming the ``models`` parameter."""
    for m in models:
        if m != BASELINE and m not in REGISTRY:
            raise UnknownModel(f"models: unknown model {m!r}; known: {', '.join(REGISTRY)}, {BASELINE}", param="models")


def run_network(
    name: str, noise: int, seed: int, config: CompareConfig, parts: data.Split, labels: list[str]
) -> RunResult:
    overrides = {"name": name}
    if config.worksheet:
        overrides["hidden"] = config.hidden or 32
        overrides["dropout"] = 0.0
    elif config.hidden:
        overrides["hidden"] = config.hidden
    steps = config.epochs * math.ceil(len(parts.train) / resolve_settings(None).train.batch_size)
    settings = resolve_settings(
        None,
        worksheet=config.worksheet,
        model=overrides,
        train={
            "noise": noise,
            "seed": seed,
            "epochs": config.epochs,
            "patience": 0,
            "iters": config.iters,
            "plot_every": config.plot_every,
            "print_every": 0,
            "log_every": max(1, steps // 40),
        },  # about 40 points a curve
        prune=config.prune if config.worksheet else 0,
    )
    valid = data.encode_pairs(parts.valid, labels) if parts.valid and not config.worksheet else None
    return _measure(name, settings, noise, seed, parts, labels, valid=valid)


def run_baseline(noise: int, seed: int, config: CompareConfig, parts: data.Split, labels: list[str]) -> RunResult:
    """The DESIGN's baseline, the ``ngram-lr`` model (TF-IDF character 1-5-grams and logistic regression,
    scikit-learn), on the same training names (pruned as the worksheet loop's), noise and test names."""
    settings = resolve_settings(
        "ngram-lr", train={"noise": noise, "seed": seed}, prune=config.prune if config.worksheet else 0
    )
    return _measure(BASELINE, settings, noise, seed, parts, labels, valid=None)


def _measure(
    name: str, settings, noise: int, seed: int, parts: data.Split, labels: list[str], *, valid: data.Encoded | None
) -> RunResult:
    """Train as ``settings`` say, then the held-out figures, clean and with the same noise."""
    test = data.encode_pairs(parts.test, labels)
    noisy = noisy_copy(test, noise, 10_000 + seed)
    model, history, used = fit(settings, parts.train, valid, labels)
    per_point = 1 if settings.worksheet else settings.train.batch_size  # x axis: training names seen
    curve_x = [float(s * per_point) for s in history.loss_steps]
    final_loss = (
        history.final_loss if history.losses else validate(model, data.encode_pairs(used, labels), labels)["loss"]
    )  # ngram-lr: its fit's

    def predict(enc):
        return batched_log_probs(model, enc.tokens, enc.lengths)[0].argmax(1)

    clean_m, noisy_m = _evaluate(predict, test, noisy, labels)
    return RunResult(
        model=name,
        noise=noise,
        seed=seed,
        train_seconds=history.train_seconds,
        final_loss=final_loss,
        accuracy=clean_m["accuracy"],
        macro_f1=clean_m["macro_f1"],
        noisy_accuracy=noisy_m["accuracy"],
        noisy_macro_f1=noisy_m["macro_f1"],
        curve_x=curve_x,
        curve_loss=list(history.losses),
        attention=attention_shares(model, test, noisy) if model.has_attention else None,
    )


def run_grid(pairs: list[data.Pair], config: CompareConfig, *, report=print) -> list[RunResult]:
    parts = data.split(pairs, (0.8, 0.1, 0.1), seed=config.split_seed)
    labels = data.languages(pairs)
    results = []
    total = len(config.models) * len(config.noise) * config.seeds
    for noise in config.noise:
        for name in config.models:
            for seed in range(config.seeds):
                if name == BASELINE:
                    result = run_baseline(noise, seed, config, parts, labels)
                else:
                    result = run_network(name, noise, seed, config, parts, labels)
                results.append(result)
                report(
                    f"[{len(results)}/{total}] {name:<14} noise {noise} seed {seed}: "
                    f"{result.train_seconds:6.1f}s, final loss {result.final_loss:.3f}, held-out accuracy "
                    f"{result.accuracy:.3f}, macro-F1 {result.macro_f1:.3f}"
                )
    return results


# ----------------------------------------------------------------------------------------- outputs

COLUMNS = [
    "model",
    "noise",
    "seed",
    "train_seconds",
    "final_loss",
    "accuracy",
    "macro_f1",
    "noisy_accuracy",
    "noisy_macro_f1",
    "attention_on_noise",
    "attention_on_last_letter",
    "attention_on_final_position",
    "attention_uniform_share",
]


def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else float("nan")


def summarise(results: list[RunResult]) -> dict[tuple[str, int], dict]:
    """Mean over seeds for each (model, noise)."""
    groups = defaultdict(list)
    for r in results:
        groups[(r.model, r.noise)].append(r.row())
    return {
        key: {c: _mean([row.get(c) for row in rows]) for c in COLUMNS[3:]} | {"runs": len(rows)}
        for key, rows in groups.items()
    }


def _fmt(x, digits=3):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_tables(results: list[RunResult], out: Path) -> None:
    with atomic_text(out / "results.csv") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow(r.row())
    lines = [
        "| model | noise | seed | train s | final loss | accuracy | macro-F1 | noisy accuracy | noisy macro-F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.noise} | {r.seed} | {r.train_seconds:.1f} | {_fmt(r.final_loss)} | "
            f"{_fmt(r.accuracy)} | {_fmt(r.macro_f1)} | {_fmt(r.noisy_accuracy)} | {_fmt(r.noisy_macro_f1)} |"
        )
    with atomic_text(out / "results.md") as fh:
        fh.write("\n".join(lines) + "\n")


def write_curves(results: list[RunResult], out: Path, config: CompareConfig) -> list[Path]:
    paths = []
    for noise in config.noise:
        curves = defaultdict(list)
        for r in results:
            if r.noise == noise and r.curve_loss:
                curves[r.model].append((r.curve_x, r.curve_loss))
        if curves:
            xlabel = "Iterations" if config.worksheet else "Training names seen"
            from . import plots  # matplotlib, only when curves are drawn

            path = out / f"loss_noise{noise}.png"
            plots.loss_curves(curves, title=f"Training loss, noise level {noise}", xlabel=xlabel, path=path)
            paths.append(path)
    return paths


def write_report(results: list[RunResult], out: Path, config: CompareConfig, curve_paths: list[Path]) -> Path:
    """Answers to the worksheet's questions, each from the measured numbers."""
    s = summarise(results)
    nets = [m for m in config.models if m != BASELINE]
    noises = sorted(config.noise)
    lo, hi = noises[0], noises[-1]
    mode = (
        f"the worksheet loop ({config.iters:,} one-name SGD steps, {config.prune} names a language)"
        if config.worksheet
        else f"the batched trainer ({config.epochs} epochs)"
    )
    md = [
        "# The worksheet's questions, answered by measurement",
        "",
        f"Models: {', '.join(config.models)}; noise levels {', '.join(map(str, noises))}; "
        f"{config.seeds} seed(s) each; trained with {mode} on 80 % of the distinct names; held-out figures "
        "on the 10 % test part of a leak-free split (by distinct name, stratified by language). Every number "
        "is a mean over seeds; `results.csv` has each run. A network's final loss is its trainer's training loss "
        "over the last window of steps; the baseline's is its log-loss on the training names.",
        "",
    ]
    md += [
        "| model | noise | train s | final loss | held-out accuracy | macro-F1 | accuracy on noisy names |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (model, noise), v in sorted(s.items(), key=lambda kv: (kv[0][1], config.models.index(kv[0][0]))):
        md.append(
            f"| {model} | {noise} | {v['train_seconds']:.1f} | {_fmt(v['final_loss'])} | {_fmt(v['accuracy'])} "
            f"| {_fmt(v['macro_f1'])} | {_fmt(v['noisy_accuracy'])} |"
        )
    md.append("")
    for p in curve_paths:
        md += [f"![{p.stem}]({p.name})", ""]

    def at(model, noise, key):
        return s.get((model, noise), {}).get(key, float("nan"))

    # 1. efficiency
    md += ["## Which model trains most efficiently?", ""]
    if nets:
        by_loss = sorted(nets, key=lambda m: at(m, lo, "final_loss"))
        half = {}
        for m in nets:
            runs = [r for r in results if r.model == m and r.noise == lo and r.curve_loss]
            if runs:
                k = len(runs[0].curve_loss) // 4
                half[m] = _mean([sum(r.curve_loss[: max(k, 1)]) / max(k, 1) for r in runs])
        fastest = min(half, key=half.get) if half else by_loss[0]
        md.append(
            f"At noise {lo}, the lowest final training loss is {by_loss[0]}'s "
            f"({_fmt(at(by_loss[0], lo, 'final_loss'))}), against "
            + ", ".join(f"{m} {_fmt(at(m, lo, 'final_loss'))}" for m in by_loss[1:])
            + ". "
            f"Over the first quarter of training the mean loss is lowest for {fastest} ("
            + ", ".join(f"{m} {_fmt(v)}" for m, v in sorted(half.items(), key=lambda kv: kv[1]))
            + "), "
            "so it learns fastest per name seen. In wall-clock seconds: "
            + ", ".join(f"{m} {at(m, lo, 'train_seconds'):.1f} s" for m in nets)
            + "."
        )
        best_held_out = max(nets, key=lambda m: at(m, lo, "macro_f1"))
        if best_held_out != by_loss[0]:
            md[-1] += (
                f" Training loss is not generalisation, though: on held-out names {best_held_out} does best "
                f"(macro-F1 {_fmt(at(best_held_out, lo, 'macro_f1'))} against {by_loss[0]}'s "
                f"{_fmt(at(by_loss[0], lo, 'macro_f1'))}), so {by_loss[0]} fits the training names more "
                "than it learns from them."
            )
        md.append("")
    # 2. noise and loss
    if hi != lo and nets:
        md += [f"## What does noise {hi} do to the loss, and why?", ""]
        diffs = {m: at(m, hi, "final_loss") - at(m, lo, "final_loss") for m in nets}
        higher = [m for m, d in diffs.items() if d > 0]
        md.append(
            "Final training loss at noise "
            + f"{hi} minus noise {lo}: "
            + ", ".join(f"{m} {d:+.3f}" for m, d in diffs.items())
            + ". "
            + (
                f"The loss is higher with noise for {', '.join(higher)}. "
                if higher
                else "The loss is not higher with noise for any model. "
            )
            + "The appended `.,;'` carry no information about the language but sit at the end of the name, "
            "where a model that reads its last hidden state must carry the name's evidence through up to "
            f"{hi + 1} extra steps of recurrence; the plain RNN forgets fastest, and gated units (GRU, LSTM) "
            "or attention can learn to hold or skip. Noise also makes the same name look different at every "
            "draw, so fitting the training names is harder."
        )
        md.append("")
        md += ["## Does the ranking change with noise?", ""]
        rank = {n: sorted(nets, key=lambda m: -at(m, n, "macro_f1")) for n in (lo, hi)}
        changed = rank[lo] != rank[hi]
        md.append(
            f"Ranked by held-out macro-F1: noise {lo}: {' > '.join(rank[lo])}; noise {hi}: "
            f"{' > '.join(rank[hi])}. The ranking {'changes' if changed else 'stays the same'}. "
            f"Accuracy on held-out names carrying the same noise (noise {hi} models): "
            + ", ".join(f"{m} {_fmt(at(m, hi, 'noisy_accuracy'))}" for m in nets)
            + "."
        )
        md.append("")
    # 3. attention
    att_runs = [r for r in results if r.attention]
    if att_runs:
        md += ["## Where does attention go?", ""]
        for noise in noises:
            rs = [r for r in att_runs if r.noise == noise]
            if not rs:
                continue
            a = {k: _mean([r.attention[k] for r in rs]) for k in rs[0].attention}
            if noise == 0:
                md.append(
                    f"At noise 0, the mean weight on a name's last letter is {a['on_last_letter']:.2f}, "
                    f"against {a['uniform_share']:.2f} if attention were spread evenly: "
                    + (
                        "most of the attention sits on the end of the name, because the GRU state there has "
                        "read the whole name and is the most informative summary."
                        if a["on_last_letter"] > 2 * a["uniform_share"]
                        else "attention is spread over the name rather than fixed on its end."
                    )
                )
            else:
                md.append(
                    f"At noise {noise}, on held-out names carrying that noise, {a['on_noise']:.0%} of the "
                    f"attention falls on the appended punctuation, {a['on_last_letter']:.2f} on the name's last "
                    f"letter and {a['on_final_position']:.2f} on the final position, which is the last letter "
                    f"itself "
                    f"when no noise was drawn (even spread: "
                    f"{a['uniform_share']:.2f} a character). "
                    + (
                        "The model has learned to look past the noise to the states that carry the name."
                        if a["on_last_letter"] > a["on_final_position"]
                        else "The noise states still draw the weight: the GRU carries the name through them, so "
                        "their states remain informative summaries."
                    )
                )
            md.append("")
    # 4. self-attention against recurrence
    md += self_attention_answer(config, at, noises)
    # 5. unseen names
    md += ["## How do the models compare on unseen names (the bonus)?", ""]
    order = sorted(config.models, key=lambda m: -at(m, lo, "macro_f1"))
    bonus = (
        f"On held-out names at noise {lo}: "
        + "; ".join(
            f"{m} accuracy {_fmt(at(m, lo, 'accuracy'))}, macro-F1 {_fmt(at(m, lo, 'macro_f1'))}" for m in order
        )
        + "."
    )
    if BASELINE in config.models:
        better = [m for m in nets if at(m, lo, "macro_f1") > at(BASELINE, lo, "macro_f1")]
        bonus += " Against the character n-gram logistic regression baseline, " + (
            f"{', '.join(better)} {'does' if len(better) == 1 else 'do'} better on macro-F1."
            if better
            else "no network here beats it on macro-F1."
        )
    md.append(bonus)
    md.append("")
    path = out / "report.md"
    with atomic_text(path) as fh:
        fh.write("\n".join(md))
    return path


RECURRENT = ("tutorial-rnn", "rnn", "gru", "gru-attention", "lstm")


def self_attention_answer(config: CompareConfig, at, noises: list[int]) -> list[str]:
    """'Does self-attention beat recurrence on names?', from the held-out means (``at(model, noise, key)``)."""
    recurrent = [m for m in config.models if m in RECURRENT]
    if "transformer" not in config.models or not recurrent:
        return []
    md = ["## Does self-attention beat recurrence on names?", ""]
    for noise in noises:
        best = max(recurrent, key=lambda m: at(m, noise, "macro_f1"))
        df1 = at("transformer", noise, "macro_f1") - at(best, noise, "macro_f1")
        dacc = at("transformer", noise, "accuracy") - at(best, noise, "accuracy")
        if df1 > 0 and dacc > 0:
            verdict = "yes: the transformer is ahead on both figures"
        elif df1 < 0 and dacc < 0:
            verdict = "no: the best recurrent model is ahead on both figures"
        else:
            verdict = "neither clearly: each is ahead on one figure"
        md.append(
            f"At noise {noise}, the transformer reaches held-out accuracy "
            f"{_fmt(at('transformer', noise, 'accuracy'))} "
            f"and macro-F1 {_fmt(at('transformer', noise, 'macro_f1'))}; the best recurrent model by macro-F1, "
            f"{best}, {_fmt(at(best, noise, 'accuracy'))} and {_fmt(at(best, noise, 'macro_f1'))} "
            f"(differences {dacc:+.3f} accuracy, {df1:+.3f} macro-F1, over {config.seeds} seed(s)); "
            f"training took {at('transformer', noise, 'train_seconds'):.1f} s against "
            f"{at(best, noise, 'train_seconds'):.1f} s. So, {verdict}"
            + (
                " — by less than a point, within what seeds alone can move."
                if abs(df1) < 0.01 and abs(dacc) < 0.01
                else "."
            )
        )
        md.append("")
    return md


def compare(pairs: list[data.Pair], config: CompareConfig, out: str | Path, *, report=print) -> list[RunResult]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_grid(pairs, config, report=report)
    write_tables(results, out)
    curves = write_curves(results, out, config)
    write_report(results, out, config, curves)
    return results
