import pytest
import torch

from nameorigin import plots
from nameorigin.evaluation import (
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    format_report,
    metrics,
    reliability,
)


def test_metrics_by_hand():
    truth = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    m = metrics(truth, pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6) and m["n"] == 6
    # a: p=1, r=2/3, f1=0.8; b: p=1/2, r=1/2, f1=0.5; c: p=1/2, r=1, f1=2/3
    assert m["per_language"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert confusion_matrix(truth, pred, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_languages_absent_from_both_sides_do_not_count():
    m = metrics(torch.tensor([0, 0]), torch.tensor([0, 0]), ["a", "b"])
    assert m["macro_f1"] == 1.0 and set(m["per_language"]) == {"a"}


def test_temperature_scaling_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, 5, generator=g) * 3
    truth = torch.multinomial((logits / 2.0).softmax(1), 1, generator=g).squeeze(1)
    t = fit_temperature(logits.log_softmax(1), truth)
    assert t == pytest.approx(2.0, rel=0.05)
    before = expected_calibration_error(logits.softmax(1), truth)
    after = expected_calibration_error((logits / t).softmax(1), truth)
    assert after < 0.02 < before


def test_reliability_bins_and_diagram(tmp_path):
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    bins = reliability(probs, torch.tensor([0, 1, 1]), bins=5)
    assert sum(b["count"] for b in bins) == 3
    fig = plots.reliability_diagram(bins, bins, temperature=1.5, path=tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "after (T = 1.50)" in plots.figure_text(fig)


def test_macro_f1_covered_averages_over_the_languages_of_the_names_scored():
    # two languages scored; one name given a third language the names do not hold
    result = metrics(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 1]), ["a", "b", "c"])
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)  # the third language counts, with F1 0
    assert result["macro_f1_covered"] == pytest.approx((2 / 3 + 1) / 2)
    assert "over the 2 languages of these names" in format_report(result)
    full = metrics(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), ["a", "b", "c"])
    assert full["macro_f1_covered"] == pytest.approx(full["macro_f1"])  # every language scored: the same
    assert "languages of these names" not in format_report(full)
