"""The Python training API (nameorigin.fit, compare, the plotting helpers) on tiny generated data."""

import pytest
import torch

import nameorigin
from conftest import train_tiny
from nameorigin import checkpoint, data, plots
from nameorigin.errors import InputError
from nameorigin.training import History


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from conftest import write_names_dir

    folder = write_names_dir(tmp_path_factory.mktemp("api"), duplicate=True)
    pairs = nameorigin.load_names(folder)
    return folder, pairs, nameorigin.split_names(pairs, (0.7, 0.15, 0.15))


@pytest.fixture(scope="module")
def attention_model(tiny):
    _, _, parts = tiny
    return nameorigin.fit(parts, model="gru-attention", hidden=24, epochs=20, lr=0.02, batch_size=16, patience=0)


def test_load_names_dedupes_and_split_is_leak_free(tiny):
    folder, pairs, parts = tiny
    assert len(pairs) == 160 == len(set(pairs))  # the repeated line is gone
    assert pairs == data.dedupe(data.read_labelled(folder))
    names = [{n for n, _ in part} for part in (parts.train, parts.valid, parts.test)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert len(parts.train) + len(parts.valid) + len(parts.test) == len(pairs)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.5, 0.1, 0.1), (0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_split_names_refuses_bad_fractions(tiny, fractions):
    with pytest.raises(ValueError, match="fractions"):
        nameorigin.split_names(tiny[1], fractions)


def test_fit_learns_and_gives_a_calibrated_predictor(tiny, attention_model):
    _, _, parts = tiny
    trained = attention_model
    assert trained.labels == ["Alpha", "Beta", "Delta", "Gamma"]
    assert trained.settings.model.name == "gru-attention" and trained.settings.model.hidden == 24
    assert trained.history.kind == "batched" and len(trained.history.epochs) == 20
    result = trained.evaluate(parts.test)
    assert result["accuracy"] >= 0.8 and set(result) >= {"accuracy", "macro_f1", "loss", "per_language", "n"}
    assert result["n"] == len(parts.test) and set(result["per_language"]) <= set(trained.labels)
    assert trained.meta["metrics"]["test"]["accuracy"] == pytest.approx(result["accuracy"])
    # temperature fitted on validation, and used by the predictor
    assert trained.predictor.temperature == pytest.approx(trained.meta["temperature"]) != 1.0
    assert trained.meta["calibration"]["valid_ece_after"] <= trained.meta["calibration"]["valid_ece_before"] + 1e-9
    best = trained.predictor.predict([n for n, _ in parts.test], top=1)
    assert sum(p.predictions[0]["language"] == lang for p, (_, lang) in zip(best, parts.test, strict=False)) == round(
        result["accuracy"] * len(parts.test)
    )
    # noisy names: a different encoding, still scored
    assert trained.evaluate(parts.test, noise=5)["n"] == len(parts.test)
    assert trained.confusion(parts.test).sum() == len(parts.test)


def test_saved_model_loads_with_the_metadata_the_cli_writes(tiny, attention_model, tmp_path):
    _, _, parts = tiny
    path = attention_model.save(tmp_path / "api.safetensors")
    loaded = nameorigin.Predictor.load(path)
    names = [n for n, _ in parts.test]
    assert torch.allclose(loaded.probabilities(names).probs, attention_model.predictor.probabilities(names).probs)
    _, cli_path = train_tiny(tmp_path, "gru", "--epochs", "2")
    ours, theirs = checkpoint.read_meta(path), checkpoint.read_meta(cli_path)
    assert set(ours) == set(theirs)
    assert set(ours["training"]) == set(theirs["training"]) and set(ours["history"]) == set(theirs["history"])
    assert ours["data_fingerprint"] == data.fingerprint(parts.train)


def test_fit_runs_the_worksheet_loop_from_a_preset_and_splits_pairs(tiny):
    _, pairs, _ = tiny
    lines = []
    trained = nameorigin.fit(
        pairs,
        preset="worksheet-rnn",
        iters=300,
        plot_every=50,
        print_every=100,
        printer=lines.append,
        split=(0.8, 0.2, 0.0),
    )
    assert trained.settings.worksheet and trained.settings.prune == 50
    assert trained.history.kind == "worksheet" and trained.history.loss_steps == [50, 100, 150, 200, 250, 300]
    assert len(lines) == 3
    assert not trained.split.test and trained.meta["metrics"]["test"] is None
    assert trained.meta["training"]["split"] == [0.8, 0.2, 0.0]
    assert trained.history.best["accuracy"] == pytest.approx(trained.evaluate(trained.split.valid)["accuracy"])


def test_fit_refuses_unknown_settings_and_one_language(tiny):
    with pytest.raises(TypeError, match="hiden"):
        nameorigin.fit(tiny[2], hiden=3)
    with pytest.raises(data.DataError, match="at least 2 languages"):
        nameorigin.fit([(n, "Alpha") for n, _ in tiny[1]])
    # what the command line refuses, the library refuses too, naming the setting (epochs=0 trained nothing)
    for bad in ({"epochs": 0}, {"epochs": "2"}, {"iters": -1}, {"threads": 0}):
        with pytest.raises(InputError) as e:
            nameorigin.fit(tiny[2], **bad)
        assert e.value.param == next(iter(bad))


def test_fit_takes_threads_as_train_does(tiny):
    import torch

    before = torch.get_num_threads()
    try:
        nameorigin.fit(tiny[2], model="rnn", hidden=8, epochs=1, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_compare_returns_a_table_and_writes_only_when_asked(tiny, tmp_path, monkeypatch):
    _, pairs, _ = tiny
    monkeypatch.chdir(tmp_path)
    lines = []
    table = nameorigin.compare(pairs, ["rnn", "baseline"], noise=[0, 2], epochs=2, report=lines.append)
    assert list(tmp_path.iterdir()) == []
    assert len(lines) == 4
    assert list(table["model"]) == ["rnn", "baseline", "rnn", "baseline"] and list(table["noise"]) == [0, 0, 2, 2]
    assert table["accuracy"].between(0, 1).all() and table["noisy_accuracy"].between(0, 1).all()
    assert len(table["curve_loss"][0]) > 0 and len(table["curve_x"][0]) == len(table["curve_loss"][0])
    nameorigin.compare(pairs, ["gru-attention"], noise=[2], epochs=1, out=tmp_path / "cmp")
    assert {"results.csv", "report.md", "loss_noise2.png"} <= {p.name for p in (tmp_path / "cmp").iterdir()}


def test_plot_helpers_return_figures(tiny, attention_model):
    _, _, parts = tiny
    history = History(kind="batched", loss_steps=[1, 2, 3], losses=[1.0, 0.5, 0.25])
    fig = nameorigin.plot_losses(
        {"att": attention_model, "bare": history, "pair": ([1, 2], [2.0, 1.0])}, title="Together"
    )
    assert {"Together", "Steps"} <= set(plots.figure_text(fig))
    assert len(fig.axes[0].get_lines()) == 3
    fig = nameorigin.plot_attention(attention_model, ["Kalov", "McTe", "!!"])
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(rows) == 2 and rows[0].startswith("Kalov (")
    fig = nameorigin.plot_confusion(attention_model, parts.test)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == attention_model.labels
    plain = nameorigin.fit(parts, model="rnn", hidden=8, epochs=1)
    with pytest.raises(ValueError, match="no attention"):
        nameorigin.plot_attention(plain, ["Kalov"])
