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


def test_the_best_thresholds_are_those_a_search_of_every_pair_finds_within_the_in_scope_budget():
    import itertools

    import numpy as np

    from nameorigin.evaluation import best_thresholds

    rng = np.random.default_rng(0)
    in_top, in_oos = rng.uniform(0.2, 1, 60).round(3), rng.uniform(0, 0.8, 60).round(3)
    out_top, out_oos = rng.uniform(0, 0.9, 40).round(3), rng.uniform(0.3, 1, 40).round(3)
    best = best_thresholds(in_top, in_oos, out_top, out_oos, most_in=0.10)
    assert np.mean((in_top < best["min_confidence"]) | (in_oos > best["max_out_of_scope"])) <= 0.10
    assert best["in_scope_abstained"] <= 0.10
    found = 0.0  # every pair of thresholds among the names' own values and the ends
    for c, t in itertools.product(np.r_[0, in_top, out_top, 1.1], np.r_[-1, in_oos, out_oos, 2]):
        if np.mean((in_top < c) | (in_oos > t)) <= 0.10:
            found = max(found, np.mean((out_top < c) | (out_oos > t)))
    assert best["out_of_scope_abstained"] == pytest.approx(found)
    assert 0 < found < 1  # the budget binds: not every out-of-scope name can be set aside
    with pytest.raises(ValueError, match="names on each side"):
        best_thresholds([], [], [0.5], [0.5])
