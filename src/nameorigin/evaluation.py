"""Accuracy, macro-F1, per-language precision/recall/F1, the confusion matrix, calibration, prediction-set
coverage, risk-coverage and AUROC."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from .fitting import minimize


def confusion_matrix(truth: torch.Tensor, pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts ``[true, predicted]`` (C, C)."""
    return torch.bincount(truth * n_classes + pred, minlength=n_classes * n_classes).view(n_classes, n_classes)


def metrics(truth: torch.Tensor, pred: torch.Tensor, labels: Sequence[str]) -> dict:
    """``{"accuracy", "macro_f1", "per_language": {lang: {precision, recall, f1, support}}, "n"}``.

    Macro-F1 averages over the languages that occur in ``truth`` or ``pred``; ``macro_f1_covered`` over those
    that occur in ``truth`` (the languages the names scored cover: a benchmark of 16 languages scored by a model
    of 18 is not marked down twice for each name it gives one of the other two, once in recall and once as a
    language with F1 0).
    """
    n = int(truth.numel())
    cm = confusion_matrix(truth, pred, len(labels)).double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    present = (support + predicted) > 0
    per_language = {
        lang: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, lang in enumerate(labels)
        if present[i]
    }
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "macro_f1_covered": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
        "per_language": per_language,
        "n": n,
    }


def format_report(result: dict) -> str:
    """The metrics as a plain-text table."""
    lines = [
        f"names     {result['n']}",
        f"accuracy  {result['accuracy']:.4f}",
        f"macro-F1  {result['macro_f1']:.4f}",
        "",
        f"{'language':<12} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    covered = sum(m["support"] > 0 for m in result["per_language"].values())
    if "macro_f1_covered" in result and covered < len(result["per_language"]):  # languages only predicted
        lines.insert(3, f"macro-F1  {result['macro_f1_covered']:.4f} over the {covered} languages of these names")
    if "ece_before" in result:
        lines.insert(
            lines.index(""),
            f"ECE       {result['ece_before']:.4f} before, {result['ece_after']:.4f} after temperature "
            f"scaling (T = {result['temperature']:.3f})",
        )
    for lang, m in result["per_language"].items():
        lines.append(f"{lang:<12} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>7.3f} {m['support']:>8d}")
    return "\n".join(lines)


def expected_calibration_error(probs: torch.Tensor, truth: torch.Tensor, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    confidence, predicted = probs.max(1)
    correct = (predicted == truth).double()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            gap = float(confidence[in_bin].double().mean() - correct[in_bin].mean())
            ece += float(in_bin.double().mean()) * abs(gap)
    return ece


def reliability(probs: torch.Tensor, truth: torch.Tensor, bins: int = 15) -> list[dict]:
    """Per confidence bin: its range, mean confidence, accuracy and count (for a reliability diagram)."""
    confidence, predicted = probs.max(1)
    correct = (predicted == truth).double()
    edges = torch.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        n = int(in_bin.sum())
        out.append(
            {
                "low": float(lo),
                "high": float(hi),
                "count": n,
                "confidence": float(confidence[in_bin].mean()) if n else None,
                "accuracy": float(correct[in_bin].mean()) if n else None,
            }
        )
    return out


def fit_temperature(log_probs: torch.Tensor, truth: torch.Tensor) -> float:
    """Temperature scaling: the T > 0 that minimises the NLL of ``softmax(log_probs / T)`` (fit on validation)."""
    log_t = torch.zeros(1, requires_grad=True)
    lp = log_probs.detach().double()
    minimize(lambda: torch.nn.functional.cross_entropy(lp / log_t.exp().double(), truth), [log_t], lr=0.1, max_iter=100)
    return float(log_t.detach().exp())


def best_thresholds(
    in_top: Sequence[float],
    in_oos: Sequence[float],
    out_top: Sequence[float],
    out_oos: Sequence[float],
    *,
    most_in: float = 0.10,
) -> dict:
    """The pair of abstention thresholds (``min_confidence``, ``max_out_of_scope``, as ``decide`` applies them:
    abstain when the top probability is below the first or the out-of-scope score above the second) that abstains
    on the most of the out-of-scope names (``out_*``) while abstaining on at most ``most_in`` of the in-scope ones
    (``in_*``), both chosen on these very names: what the best thresholds could reach on them, not what thresholds
    chosen elsewhere will. Each candidate ``min_confidence`` (0 and each distinct in-scope top probability below
    the ``most_in`` quantile's) leaves a budget of in-scope names the out-of-scope threshold may set aside."""
    in_top, in_oos = np.asarray(in_top, dtype=np.float64), np.asarray(in_oos, dtype=np.float64)
    out_top, out_oos = np.asarray(out_top, dtype=np.float64), np.asarray(out_oos, dtype=np.float64)
    if not len(in_top) or not len(out_top):
        raise ValueError("the best thresholds need names on each side")
    budget = int(np.floor(most_in * len(in_top) + 1e-9))
    best = {"out_of_scope_abstained": -1.0}
    candidates = np.r_[0.0, np.unique(in_top)[: budget + 1]]
    for c in candidates:
        low = in_top < c
        left = budget - int(low.sum())
        if left < 0:
            break
        rest = -in_oos[~low]  # the kept in-scope names' scores, negated: the (left+1)-th largest by partition
        # abstain above t sets aside at most `left` of them (ties stay in); a budget for all of them: every name
        t = -np.inf if left >= len(rest) else -np.partition(rest, left)[left]
        if np.isfinite(t):  # written with 6 decimals, rounded the way that abstains on no more names
            c, t = np.floor(c * 1e6) / 1e6, np.ceil(t * 1e6) / 1e6
        out = float(np.mean((out_top < c) | (out_oos > t)))
        if out > best["out_of_scope_abstained"]:
            best = {
                "min_confidence": float(c),
                "max_out_of_scope": float(t),
                "out_of_scope_abstained": out,
                "in_scope_abstained": float(np.mean((in_top < c) | (in_oos > t))),
            }
    best["most_in_scope"] = most_in
    return best


def auroc(negative: Sequence[float], positive: Sequence[float]) -> float:
    """Area under the ROC curve of a score that should be higher for ``positive`` than for ``negative``: the
    chance that a random positive outscores a random negative (ties count half), by ranks (Mann-Whitney U)."""
    neg, pos = np.asarray(negative, dtype=np.float64), np.asarray(positive, dtype=np.float64)
    if not len(neg) or not len(pos):
        raise ValueError("AUROC needs at least one score on each side")
    both = np.concatenate([neg, pos])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)  # average ranks over ties
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[len(neg) :].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


def set_coverage(sets, truth, labels: Sequence[str]) -> dict:
    """Empirical coverage and mean set size of prediction sets (N, C) bool, overall and per true language."""
    sets, truth = np.asarray(sets, dtype=bool), np.asarray(truth)
    covered = sets[np.arange(len(truth)), truth]
    size = sets.sum(1)
    per_language = {}
    for i, lang in enumerate(labels):
        mine = truth == i
        if mine.any():
            per_language[lang] = {
                "coverage": float(covered[mine].mean()),
                "mean_size": float(size[mine].mean()),
                "n": int(mine.sum()),
            }
    return {"coverage": float(covered.mean()), "mean_size": float(size.mean()), "per_language": per_language}


def risk_coverage(confidence, correct) -> tuple[list[float], list[float]]:
    """Answering only the most confident names first: for each share answered (coverage), the error rate
    among them (risk). Returns (coverage, risk), one point per name."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    order = np.argsort(-confidence, kind="stable")
    answered = np.arange(1, len(order) + 1)
    errors = np.cumsum(~correct[order])
    return (answered / len(order)).tolist(), (errors / answered).tolist()


def selective_accuracy(confidence, correct, share: float) -> float:
    """Accuracy on the ``share`` most confident names."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    k = max(1, round(share * len(confidence)))
    return float(correct[np.argsort(-confidence, kind="stable")[:k]].mean())


def format_trust_report(result: dict) -> str:
    """Prediction-set coverage (overall and per language), abstention and out-of-scope figures as plain text."""
    lines = []
    sets = result.get("sets")
    if sets:
        levels = list(sets)
        lines += [
            "",
            "prediction sets (conformal): empirical coverage and mean set size",
            f"{'language':<12} " + " ".join(f"{'cov@' + c:>9} {'size@' + c:>9}" for c in levels),
        ]
        rows = [("all", {c: sets[c] for c in levels})]
        rows += [(lang, {c: sets[c]["per_language"][lang] for c in levels}) for lang in sets[levels[0]]["per_language"]]
        for name, by_level in rows:
            lines.append(
                f"{name:<12} "
                + " ".join(f"{by_level[c]['coverage']:>9.3f} {by_level[c]['mean_size']:>9.2f}" for c in levels)
            )
    if "abstained" in result:
        lines += ["", f"abstained {result['abstained']:.3f} of these names (default thresholds)"]
    oos = result.get("out_of_scope")
    if oos:
        lines += [
            f"out-of-scope names: {oos['n']} ({oos['unreadable']} unreadable, left out)",
            f"out-of-scope AUROC {oos['auroc']:.3f} (top probability alone: {oos['auroc_top_probability']:.3f})",
            f"abstained on {oos['abstained']:.3f} of the out-of-scope names, "
            f"{oos['abstained_in_scope']:.3f} of the in-scope ones",
        ]
        best = oos.get("best_thresholds")
        if best:
            lines.append(
                f"best on these names (at most {best['most_in_scope']:.0%} of the in-scope set aside): "
                f"--min-confidence {best['min_confidence']:.6f} --max-out-of-scope {best['max_out_of_scope']:.6f} "
                f"abstain on {best['out_of_scope_abstained']:.3f} of the out-of-scope names, "
                f"{best['in_scope_abstained']:.3f} of the in-scope ones (chosen on them: a bound, not a forecast)"
            )
    return "\n".join(lines)
