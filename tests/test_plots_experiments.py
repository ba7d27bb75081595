"""Pictures (rendered with no display) and the worksheet's comparison grid, on tiny data."""

import csv

import pytest
import torch

from conftest import make_names, train_tiny
from nameorigin import data, experiments, plots
from nameorigin.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_backend_needs_no_display():
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"


def test_confusion_plot_labels_every_language_on_both_axes(tmp_path):
    labels = ["Arabic", "Chinese", "Czech"]
    fig = plots.confusion([[3, 1, 0], [0, 2, 0], [1, 0, 0]], labels, path=tmp_path / "cm.png")
    assert is_png(tmp_path / "cm.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    grid = ax.get_images()[0].get_array()
    assert grid[0].tolist() == [0.75, 0.25, 0.0] and grid[2].tolist() == [1.0, 0.0, 0.0]  # rows sum to 1
    assert "True language" in plots.figure_text(fig) and "Predicted language" in plots.figure_text(fig)


def test_attention_map_shows_each_character(tmp_path):
    fig = plots.attention_map(["Abel", "Ng"], [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5]], path=tmp_path / "a.png")
    assert is_png(tmp_path / "a.png")
    text = plots.figure_text(fig)
    assert [t for t in text if t in "Abel" and len(t) == 1][:4] == ["A", "b", "e", "l"]
    assert "Abel" in text and "Ng" in text and "attention weight" in text


def test_loss_curves_show_each_model_with_its_seed_count(tmp_path):
    curves = {
        "rnn": [([1, 2, 3], [2.0, 1.5, 1.2]), ([1, 2, 3], [2.2, 1.4, 1.1])],
        "gru": [([1, 2, 3], [2.0, 1.0, 0.5])],
    }
    fig = plots.loss_curves(curves, title="Training loss, noise level 5", path=tmp_path / "l.png")
    assert is_png(tmp_path / "l.png")
    text = plots.figure_text(fig)
    assert "rnn (n=2)" in text and "gru (n=1)" in text and "Training loss, noise level 5" in text


@pytest.fixture(scope="module")
def tiny_pairs():
    return [(n, lang) for lang, names in make_names(30).items() for n in names]


def test_compare_grid_writes_tables_curves_and_report(tmp_path, tiny_pairs):
    config = experiments.CompareConfig(
        models=["rnn", "gru-attention", "baseline"], noise=[0, 3], seeds=2, epochs=3, hidden=12
    )
    results = experiments.compare(tiny_pairs, config, tmp_path, report=lambda line: None)
    assert len(results) == 3 * 2 * 2
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 12
    for key in (
        "model",
        "noise",
        "seed",
        "train_seconds",
        "final_loss",
        "accuracy",
        "macro_f1",
        "noisy_accuracy",
        "noisy_macro_f1",
    ):
        assert rows[0][key] != "", key
    att = [r for r in rows if r["model"] == "gru-attention" and r["noise"] == "3"]
    assert all(0 <= float(r["attention_on_noise"]) <= 1 for r in att)
    assert all(r["attention_on_noise"] == "" for r in rows if r["model"] == "rnn")
    assert (tmp_path / "results.md").read_text().count("\n") == 14
    assert is_png(tmp_path / "loss_noise0.png") and is_png(tmp_path / "loss_noise3.png")
    report = (tmp_path / "report.md").read_text()
    for heading in (
        "Which model trains most efficiently?",
        "What does noise 3 do to the loss",
        "Does the ranking change with noise?",
        "Where does attention go?",
        "unseen names",
    ):
        assert heading in report
    assert "![loss_noise3](loss_noise3.png)" in report and "baseline" in report


def test_compare_runs_transformer_and_cnn_and_answers_the_self_attention_question(tmp_path, tiny_pairs):
    config = experiments.CompareConfig(models=["gru", "transformer", "cnn"], noise=[0], seeds=1, epochs=2, hidden=8)
    results = experiments.compare(tiny_pairs, config, tmp_path, report=lambda line: None)
    assert [r.model for r in results] == ["gru", "transformer", "cnn"]
    transformer = results[1]
    assert transformer.attention is not None and results[2].attention is None  # transformer pools by attention
    report = (tmp_path / "report.md").read_text()
    assert "## Does self-attention beat recurrence on names?" in report
    assert f"accuracy {transformer.accuracy:.3f}" in report


@pytest.mark.parametrize(
    "transformer, gru, verdict",
    [
        ({"accuracy": 0.85, "macro_f1": 0.60}, {"accuracy": 0.83, "macro_f1": 0.55}, "yes: the transformer is ahead"),
        ({"accuracy": 0.80, "macro_f1": 0.50}, {"accuracy": 0.83, "macro_f1": 0.55}, "no: the best recurrent model"),
        ({"accuracy": 0.84, "macro_f1": 0.50}, {"accuracy": 0.83, "macro_f1": 0.55}, "neither clearly"),
    ],
)
def test_the_self_attention_answer_follows_the_numbers(transformer, gru, verdict):
    figures = {"transformer": {**transformer, "train_seconds": 2.0}, "gru": {**gru, "train_seconds": 1.0}}
    config = experiments.CompareConfig(models=["gru", "transformer"], noise=[0])
    text = "\n".join(experiments.self_attention_answer(config, lambda m, n, k: figures[m][k], [0]))
    assert verdict in text and f"{transformer['accuracy']:.3f}" in text


def test_noisy_copy_appends_only_noise(tiny_pairs):
    labels = data.languages(tiny_pairs)
    enc = data.encode_pairs(tiny_pairs[:10], labels)
    noisy = experiments.noisy_copy(enc, 4, seed=1)
    assert torch.all(noisy.lengths >= enc.lengths) and torch.all(noisy.lengths <= enc.lengths + 5)
    assert experiments.noisy_copy(enc, 0, seed=1) is enc


# --- through the command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attention_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("att")
    folder, model = train_tiny(root, "gru-attention", "--hidden", "12", "--epochs", "4", "--plot", str(root / "l.png"))
    assert is_png(root / "l.png")
    return folder, model


def test_attention_command_prints_weights_and_draws(capsys, tmp_path, attention_model):
    _, model = attention_model
    assert main(["attention", "--model", str(model), "Kalov", "McRaboo", "--plot", str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    weights = [float(cell.split(":")[1]) for cell in out[1].split()]
    assert out[0].startswith("Kalov -> ") and len(weights) == 5 and abs(sum(weights) - 1) < 0.02
    assert is_png(tmp_path / "h.png")


def test_attention_command_refuses_a_model_without_attention(capsys, tmp_path):
    from conftest import train_tiny

    _, model = train_tiny(tmp_path, "gru", "--hidden", "8", "--epochs", "1")
    capsys.readouterr()
    assert main(["attention", "--model", str(model), "Hinton"]) == 2
    assert "has no attention" in capsys.readouterr().err


def test_attention_command_on_the_bundled_model(capsys):
    assert main(["attention", "Schmidhuber"]) == 0  # the bundled gru-attention
    out = capsys.readouterr().out
    assert out.startswith("Schmidhuber -> German") and "S:" in out and "r:" in out


def test_evaluate_plot(capsys, tmp_path, attention_model):
    folder, model = attention_model
    assert main(["evaluate", "--model", str(model), "--data", str(folder), "--plot", str(tmp_path / "cm.png")]) == 0
    assert is_png(tmp_path / "cm.png")


def test_compare_command_and_its_bad_input(capsys, tmp_path, attention_model):
    folder, _ = attention_model
    assert main(["compare", "--models", "gru,perceiver", "--data", str(folder), "--out", str(tmp_path)]) == 2
    assert "error: --models: unknown model 'perceiver'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["compare", "--noise", "0,x", "--data", str(folder), "--out", str(tmp_path)])
    assert info.value.code == 2 and "--noise" in capsys.readouterr().err
    assert (
        main(
            [
                "compare",
                "--models",
                "gru",
                "--noise",
                "0",
                "--epochs",
                "1",
                "--data",
                str(folder),
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert (tmp_path / "c" / "report.md").is_file()
