"""One way through the house: the command line and Python run the same use cases (api.train, api.evaluate,
predict.model_info), the command line stays light, and library errors name parameters, not flags."""

import json
import pickle
import subprocess
import sys

import pytest
import torch

import nameorigin
from conftest import write_names_dir
from nameorigin import api, checkpoint, data, trust
from nameorigin.cli import flag_of, main
from nameorigin.errors import InputError
from nameorigin.trust import TrustError

SETTINGS = {"model": "gru", "hidden": 12, "epochs": 3, "batch_size": 16, "lr": 0.02, "seed": 3, "patience": 0}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _flags(settings: dict) -> list[str]:
    return [x for k, v in settings.items() for x in ("--" + k.replace("_", "-"), str(v))]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_names_dir(tmp_path_factory.mktemp("use-cases"))


@pytest.fixture(scope="module")
def trained(folder):
    return nameorigin.fit(nameorigin.load_names(folder), split_seed=2, **SETTINGS)


def test_train_command_and_fit_give_identical_weights(capsys, tmp_path, folder, trained):
    out = tmp_path / "cli.safetensors"
    code, _, err = run(
        capsys, "train", "--data", folder, "--split-seed", "2", "--out", out, "--quiet", *_flags(SETTINGS)
    )
    assert code == 0, err
    from_cli = checkpoint.load(out)
    mine = trained.model.state_dict()
    theirs = from_cli.model.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    meta = checkpoint.jsonable(trained.meta)  # the same metadata too, but for the seconds things took
    for key in ("training", "data_fingerprint", "temperature", "calibration"):
        assert meta[key] == from_cli.meta[key], key
    assert meta["metrics"]["test"] == from_cli.meta["metrics"]["test"]
    assert meta["history"]["losses"] == from_cli.meta["history"]["losses"]
    assert from_cli.meta["training"]["seed"] == 3 and from_cli.meta["training"]["split_seed"] == 2


def test_a_different_seed_gives_different_weights(folder, trained):
    other = api.train(folder, split_seed=2, **{**SETTINGS, "seed": 4})
    assert not torch.equal(other.model.state_dict()["h2o.weight"], trained.model.state_dict()["h2o.weight"])


def test_evaluate_command_prints_what_api_evaluate_reports(capsys, tmp_path, folder, trained):
    path = trained.save(tmp_path / "m.safetensors")
    code, out, _ = run(capsys, "evaluate", "--model", path, "--data", folder, "--json")
    assert code == 0
    report = api.evaluate(path, folder).report
    assert json.loads(out) == json.loads(json.dumps(report))
    assert {"accuracy", "macro_f1", "per_language", "temperature", "ece_before", "ece_after", "sets"} <= set(report)
    twin = nameorigin.evaluate(trained, trained.split.test)  # the Python twin on names in hand
    assert twin.report["n"] == len(trained.split.test) and twin.confusion().sum() == len(trained.split.test)
    before, after = twin.reliability()
    assert sum(b["count"] for b in before) == sum(b["count"] for b in after) == len(trained.split.test)
    assert "top probability" in twin.risk_coverage()


def test_evaluate_under_a_prior(capsys, tmp_path, folder, trained):
    """--prior scores the predictions under another language mix: the figures follow the re-weighted answers,
    auto reports the mix it found, and a bad prior is refused by its flag."""
    path = trained.save(tmp_path / "m.safetensors")
    test = trained.split.test
    plain = api.evaluate(path, test).report
    labels = trained.labels
    one = labels[0]
    skewed = api.evaluate(path, test, prior={lang: (1.0 if lang == one else 1e-6) for lang in labels}).report
    assert skewed["per_language"][one]["recall"] == pytest.approx(1.0)  # nearly all answers are that language
    assert skewed["accuracy"] <= plain["accuracy"] and "prior" in skewed
    auto = api.evaluate(path, test, prior="auto").report
    assert set(auto["prior"]) == set(labels) and sum(auto["prior"].values()) == pytest.approx(1, abs=1e-4)
    assert "prior" not in plain
    code, out, _ = run(capsys, "evaluate", "--model", path, "--data", folder, "--prior", "uniform", "--json")
    assert code == 0 and json.loads(out)["prior"] == {lang: pytest.approx(1 / len(labels)) for lang in labels}
    code, _, err = run(capsys, "evaluate", "--model", path, "--data", folder, "--prior", "nowhere.json")
    assert code == 2 and "--prior 'nowhere.json'" in err


def test_a_default_prior_in_the_checkpoint_answers_under_that_mix(capsys, tmp_path, trained):
    """A checkpoint may name the mix its answers are given under when none is asked for (the shipped model's:
    halfway between the training mix and an even one); prior="training" asks for the model's own."""
    from nameorigin.predict import Predictor

    path = trained.save(tmp_path / "m.safetensors")
    plain = Predictor.load(path, first=False)
    names = [n for n, _ in trained.split.test]
    mix = {lang: (5.0 if i == 0 else 1.0) for i, lang in enumerate(trained.labels)}
    wanted = trust.prior_vector(mix, trained.labels)
    out = tmp_path / "with-default.safetensors"
    checkpoint.rewrite(path, lambda _meta, layer: setattr(layer, "default_prior", wanted), out)
    shifted = Predictor.load(out, first=False)
    assert shifted.trust.default_prior == pytest.approx(wanted)
    by_default = [r.predictions[0] for r in shifted.predict(names)]
    asked = [r.predictions[0] for r in plain.predict(names, prior=mix)]
    assert by_default == asked and by_default != [r.predictions[0] for r in plain.predict(names)]
    assert [r.predictions[0] for r in shifted.predict(names, prior="training")] == [
        r.predictions[0] for r in plain.predict(names)
    ]
    assert (
        api.evaluate(shifted, trained.split.test).report["accuracy"]
        == api.evaluate(plain, trained.split.test, prior=mix).report["accuracy"]
    )
    some = names[:5]
    code, under_training, _ = run(capsys, "predict", "--model", out, "--prior", "training", "--json", *some)
    assert code == 0
    code, plain_out, _ = run(capsys, "predict", "--model", path, "--json", *some)
    assert json.loads(under_training) == json.loads(plain_out)  # --prior training: the model's own mix
    meta = checkpoint.read_meta(out)
    meta["trust"]["default_prior"] = [-1.0] * len(trained.labels)
    with pytest.raises(ValueError, match="default_prior"):
        trust._checked_doc(meta["trust"], len(trained.labels))


def test_evaluate_refuses_what_it_cannot_use(folder, trained):
    with pytest.raises(InputError, match="no names to evaluate") as caught:
        api.evaluate(trained, [])
    assert caught.value.param == "names"
    with pytest.raises(data.DataError, match="languages not known"):
        api.evaluate(trained, [("Kalov", "Klingon")])


def test_train_refuses_settings_by_their_parameter(folder):
    with pytest.raises(InputError, match=r"^members: ") as caught:
        api.train(folder, preset="worksheet-rnn", members=2)
    assert caught.value.param == "members"
    with pytest.raises(InputError, match=r"^split ") as caught:
        api.train(folder, split=(0.5, 0.6, 0.1))
    assert caught.value.param == "split"
    with pytest.raises(InputError, match=r"^pairs_or_split"):
        nameorigin.fit(str(folder))


def test_the_cli_says_parameters_as_its_flags(capsys, tmp_path, folder):
    code, _, err = run(
        capsys,
        "train",
        "--data",
        folder,
        "--preset",
        "worksheet-rnn",
        "--members",
        "2",
        "--out",
        tmp_path / "m.safetensors",
    )
    assert code == 2 and "error: --members: an ensemble" in err
    code, _, err = run(capsys, "predict", "Kalov", "--prior", "martian")
    assert code == 2 and "error: --prior 'martian'" in err
    assert flag_of("min_confidence") == "--min-confidence" and flag_of("source") == "--data"


def test_input_errors_keep_their_parameter_across_processes():
    error = pickle.loads(pickle.dumps(TrustError("coverage 2: expected a number", param="coverage")))
    assert isinstance(error, TrustError) and error.param == "coverage"
    assert error.named("--coverage") == "--coverage 2: expected a number"


def test_info_is_the_command_line_twin_of_api_model(capsys, tmp_path, trained):
    from fastapi.testclient import TestClient

    from nameorigin.predict import file_sha256
    from nameorigin.server import create_app

    path = trained.save(tmp_path / "m.safetensors")
    code, out, _ = run(capsys, "info", "--model", path, "--json")
    assert code == 0
    info = json.loads(out)
    served = TestClient(create_app(model_path=path)).get("/api/model").json()
    assert {k: v for k, v in served.items() if k != "serving"} == info
    assert info["file"]["sha256"] == file_sha256(path) and len(info["file"]["sha256"]) == 64
    assert info["labels"] == trained.labels and info["trust"]["temperature"] == pytest.approx(trained.trust.temperature)
    assert set(info["metrics"]) == {"valid", "test"}
    code, out, _ = run(capsys, "info", "--model", path)
    assert code == 0 and f"sha256    {info['file']['sha256']}" in out and "languages 4: Alpha" in out
    assert "trust     temperature" in out


def test_info_of_a_missing_file_is_an_error(capsys, tmp_path):
    code, _, err = run(capsys, "info", "--model", tmp_path / "none.safetensors")
    assert code == 2 and "none.safetensors" in err


def test_version_has_one_source(capsys):
    import re
    from importlib.metadata import version
    from pathlib import Path

    with pytest.raises(SystemExit):
        main(["--version"])
    printed = capsys.readouterr().out.strip()
    assert printed == f"nameorigin {nameorigin.__version__}" == f"nameorigin {version('nameorigin')}"
    project = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    project_table = project.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"(?m)^version\s*=", project_table)
    assert 'version = { attr = "nameorigin.__version__" }' in project


def test_the_compare_baseline_is_the_ngram_lr_model_on_noisy_names(folder):
    """One n-gram baseline: compare's ``baseline`` trains the ngram-lr model, which now sees the noise too."""
    pytest.importorskip("sklearn")
    from nameorigin import experiments
    from nameorigin.training import fit, resolve_settings

    pairs = nameorigin.load_names(folder)
    labels = data.languages(pairs)
    clean, _, _ = fit(resolve_settings("ngram-lr"), pairs, None, labels)
    noisy, _, _ = fit(resolve_settings("ngram-lr", train={"noise": 3}), pairs, None, labels)
    assert noisy.vocab.numel() > clean.vocab.numel()  # the appended punctuation's n-grams are in its vocabulary
    parts = data.split(pairs, (0.8, 0.1, 0.1), seed=0)
    result = experiments.run_baseline(3, 0, experiments.CompareConfig(), parts, labels)
    assert result.model == experiments.BASELINE and result.accuracy > 0.9 and result.final_loss > 0
    assert not hasattr(experiments, "baseline_pipeline")


HEAVY = (
    "fastapi",
    "uvicorn",
    "pydantic",
    "starlette",
    "matplotlib",
    "pandas",
    "polars",
    "dask",
    "distributed",
    "sklearn",
    "scipy",
)


@pytest.mark.parametrize("module", ["nameorigin.cli", "nameorigin.api", "nameorigin"])
def test_importing_the_command_line_loads_no_heavy_library(module):
    """The core is torch and pyarrow; the service, plots, DataFrames, Dask and scikit-learn come with the commands
    that use them."""
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_tests_do_not_import_from_bench():
    """The seeds' reference code is nameorigin.reference; bench/ is for benchmarks only."""
    from pathlib import Path

    assert not any(Path(p).name == "bench" for p in sys.path)
    assert not any(getattr(m, "__file__", None) and "/bench/" in m.__file__ for m in list(sys.modules.values()))


def test_info_of_a_checkpoint_without_a_trust_layer(capsys, tmp_path, trained):
    path = checkpoint.save(tmp_path / "old.safetensors", trained.model, trained.labels, {"temperature": 1.5})
    code, out, _ = run(capsys, "info", "--model", path)
    assert code == 0 and "trust     temperature 1.500, no out-of-scope detector" in out
    code, out, _ = run(capsys, "info", "--model", path, "--json")
    doc = json.loads(out)
    assert doc["trust"]["conformal"] is None and doc["metrics"] == {} and doc["file"]["bundled"] is False


def test_bench_bundle_keeps_the_twin_exclude_names_out_of_the_twin_alone(tmp_path):
    """bench/bundle.py --dry-run as a command: --twin-exclude and --twin-corpus reach the 80 % twin's training only
    (the shipped model learns those names), --exclude both; the first-name model has no twin."""
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "bundle.py"
    argv = [sys.executable, str(script), "--data", "names", "--corpus", "full.parquet", "--dry-run"]
    argv += ["--work", str(tmp_path), "--out", "shipped.safetensors", "--exclude", "never.txt"]
    done = subprocess.run(
        [*argv, "--twin-corpus", "twin.parquet", "--twin-exclude", "bench.txt"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    split, twin, shipped = done.stdout.strip().split("\n")
    assert split.startswith("$ nameorigin split --data names")
    assert "--corpus twin.parquet" in twin and "bench.txt" in twin and "never.txt" in twin and "test.tsv" in twin
    assert "--out shipped.safetensors" in shipped and "--corpus full.parquet" in shipped
    assert "never.txt" in shipped and "bench.txt" not in shipped and "twin.parquet" not in shipped
    done = subprocess.run([*argv, "--twin-exclude", "bench.txt"], capture_output=True, text=True)
    assert "--corpus full.parquet" in done.stdout.split("\n")[1]  # no --twin-corpus: the twin trains with --corpus
    first = [sys.executable, str(script), "--kind", "first", "--corpus", "first.parquet", "--exclude", "never.txt"]
    done = subprocess.run([*first, "--out", "f.safetensors", "--dry-run"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.startswith("$ nameorigin train --kind first --corpus first.parquet") and "never.txt" in done.stdout
    )
    for bad in (["--kind", "first", "--twin-exclude", "bench.txt"], ["--data", "names", "--twin-corpus", "t.parquet"]):
        done = subprocess.run([sys.executable, str(script), *bad, "--dry-run"], capture_output=True, text=True)
        assert done.returncode == 2 and "--twin-" in done.stderr
