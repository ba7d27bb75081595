"""Accuracy, macro-F1, per-language precision/recall/F1 and the confusion matrix."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(truth: torch.Tensor, pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts ``[true, predicted]`` (C, C)."""
    return torch.bincount(truth * n_classes + pred, minlength=n_classes * n_classes).view(n_classes, n_classes)


def metrics(truth: torch.Tensor, pred: torch.Tensor, labels: Sequence[str]) -> dict:
    """``{"accuracy", "macro_f1", "per_language": {lang: {precision, recall, f1, support}}, "n"}``.

    Macro-F1 averages over the languages that occur in ``truth`` or ``pred``.
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
        lang: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, lang in enumerate(labels) if present[i]
    }
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_language": per_language,
        "n": n,
    }


def format_report(result: dict) -> str:
    """The metrics as a plain-text table."""
    lines = [f"names     {result['n']}",
             f"accuracy  {result['accuracy']:.4f}",
             f"macro-F1  {result['macro_f1']:.4f}", "",
             f"{'language':<12} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    if "ece_before" in result:
        lines.insert(3, f"ECE       {result['ece_before']:.4f} before, {result['ece_after']:.4f} after temperature "
                        f"scaling (T = {result['temperature']:.3f})")
    for lang, m in result["per_language"].items():
        lines.append(f"{lang:<12} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>7.3f} {m['support']:>8d}")
    return "\n".join(lines)


def expected_calibration_error(probs: torch.Tensor, truth: torch.Tensor, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    confidence, predicted = probs.max(1)
    correct = (predicted == truth).double()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += float(in_bin.double().mean()) * abs(float(confidence[in_bin].double().mean() - correct[in_bin].mean()))
    return ece


def reliability(probs: torch.Tensor, truth: torch.Tensor, bins: int = 15) -> list[dict]:
    """Per confidence bin: its range, mean confidence, accuracy and count (for a reliability diagram)."""
    confidence, predicted = probs.max(1)
    correct = (predicted == truth).double()
    edges = torch.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        n = int(in_bin.sum())
        out.append({"low": float(lo), "high": float(hi), "count": n,
                    "confidence": float(confidence[in_bin].mean()) if n else None,
                    "accuracy": float(correct[in_bin].mean()) if n else None})
    return out


def fit_temperature(log_probs: torch.Tensor, truth: torch.Tensor) -> float:
    """Temperature scaling: the T > 0 that minimises the NLL of ``softmax(log_probs / T)`` (fit on validation)."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")
    lp = log_probs.detach().double()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lp / log_t.exp().double(), truth)
        loss.backward()
        return loss
    opt.step(closure)
    return float(log_t.detach().exp())
