"""The trust layer: conformal sets, target priors, the out-of-scope score, abstention, storage, and bad values."""

import csv
import json
import logging

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import train_tiny
from nameorigin import checkpoint, trust
from nameorigin.cli import main
from nameorigin.models import ModelConfig, build_model
from nameorigin.predict import Predictor
from nameorigin.server import create_app
from nameorigin.text import BadName, fold, fold_checked


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small gru trained through the command line on the tiny data: its checkpoint has a trust layer."""
    return train_tiny(
        tmp_path_factory.mktemp("trust"),
        "gru",
        "--hidden",
        "16",
        "--epochs",
        "15",
        "--lr",
        "0.02",
        "--batch-size",
        "16",
        "--split",
        "0.6,0.4,0",
    )


def calibrated_task(n: int, n_classes: int = 6, seed: int = 0):
    """Probabilities that are calibrated by construction: the true class is drawn from them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, n_classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    return probs, truth


@pytest.mark.parametrize("method", ["lac", "aps", "raps"])
@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_coverage_is_near_nominal(method, coverage):
    probs, truth = calibrated_task(3000, seed=1)
    test_probs, test_truth = calibrated_task(20000, seed=2)
    lam, k = (0.02, 1) if method == "raps" else (0.0, 0)
    scores = trust._order_scores(probs, method, lam, k)[np.arange(len(truth)), truth]
    c = trust.Conformal(method, np.sort(scores), lam, k)
    sets = c.sets(test_probs, coverage)
    covered = sets[np.arange(len(test_truth)), test_truth].mean()
    # split conformal guarantees at least the coverage; LAC is tight, the (non-randomised) cumulative scores
    # of APS and RAPS over-cover somewhat, as known
    assert coverage - 0.02 <= covered <= coverage + (0.03 if method == "lac" else 0.08)
    assert sets[np.arange(len(test_truth)), test_probs.argmax(1)].all()  # never empty: the top language is in


def test_conformal_fit_keeps_the_smallest_sets():
    probs, truth = calibrated_task(2000)
    chosen = trust.Conformal.fit(probs, truth, trust.TrustConfig())
    sizes = {}
    for method in ("lac", "aps", "raps"):
        lam, k = (0.02, 1) if method == "raps" else (0.0, 0)
        scores = np.sort(trust._order_scores(probs, method, lam, k)[np.arange(len(truth)), truth])
        sizes[method] = trust.Conformal(method, scores, lam, k).sets(probs, 0.9).sum(1).mean()
    assert chosen.method == min(sizes, key=sizes.get)


def test_em_recovers_a_known_prior_shift():
    rng = np.random.default_rng(0)
    means = np.array([-2.0, 0.0, 2.0])
    train_prior = np.array([0.6, 0.3, 0.1])
    shifted = np.array([0.1, 0.3, 0.6])
    truth = rng.choice(3, size=20000, p=shifted)
    x = rng.normal(means[truth], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - means[None, :]) ** 2)
    posterior = likelihood * train_prior  # what a model trained on the training mix would say
    posterior /= posterior.sum(1, keepdims=True)
    estimate = trust.estimate_prior(posterior, train_prior)
    assert np.abs(estimate - shifted).max() < 0.03
    adjusted = trust.reweight(posterior, train_prior, estimate)
    assert (adjusted.argmax(1) == truth).mean() > (posterior.argmax(1) == truth).mean()


def test_em_against_the_models_own_prior_stays_put_when_training_favoured_rare_languages():
    """A model trained with loss weights for rare languages says more of them than the training mix holds:
    Bayes' rule and EM against the training mix then over-correct; against the model's own prior (its mean
    probability on validation, what ``calibrate`` stores) a population of the training mix keeps its answers."""
    rng = np.random.default_rng(0)
    means, train_prior = np.array([-2.0, 0.0, 2.0]), np.array([0.8, 0.15, 0.05])

    def sample(n):
        truth = rng.choice(3, size=n, p=train_prior)
        posterior = np.exp(-0.5 * (rng.normal(means[truth], 1.0)[:, None] - means[None, :]) ** 2) * train_prior
        biased = posterior * np.array([1.0, 2.0, 6.0])  # the loss weights' lean towards the rare languages
        return biased / biased.sum(1, keepdims=True), truth

    valid, _ = sample(5000)
    layer = trust.Trust(labels=["a", "b", "c"], train_prior=train_prior, model_prior=valid.mean(0))
    probs, truth = sample(20000)
    result = layer.apply(np.log(probs), ["x"] * len(probs), prior="auto")
    naive = trust.estimate_prior(probs, train_prior)
    plain = (probs.argmax(1) == truth).mean()
    assert np.abs(result.prior - train_prior).sum() < np.abs(naive - train_prior).sum() / 2
    assert (result.probabilities.argmax(1) == truth).mean() >= plain - 0.005
    assert (trust.reweight(probs, train_prior, naive).argmax(1) == truth).mean() < plain - 0.01
    # a checkpoint without the model's prior (the first trust layers) re-weights against the training mix
    older = trust.Trust(labels=["a", "b", "c"], train_prior=train_prior)
    assert older.prior_base is train_prior and layer.prior_base is layer.model_prior


def test_the_model_prior_is_the_base_under_which_real_names_average_to_their_own_mix():
    """With a corpus's validation names, the base Bayes' rule re-weights against is solved from moment
    conditions: re-weighted to the corpus names' own mix, the answers average to that mix (for the languages
    the corpus holds), and to the labelled mix on the labelled names (for the rest). A model that leans away
    from a language on real names (the labelled data's spellings are not the population's) gets that lean
    back out of its answers under an even mix: the recovered base is the training mix times the lean."""
    rng = np.random.default_rng(0)
    means = np.array([-3.0, -1.0, 1.0, 3.0])
    train_mix = np.array([0.55, 0.25, 0.15, 0.05])
    real_mix = np.array([0.2, 0.3, 0.5, 0.0])  # the corpus holds no names of the last language
    lean = np.array([1.0, 0.5, 2.0, 1.0])  # on real names: too little of the second, too much of the third

    def sample(n, mix, tilt):
        truth = rng.choice(4, size=n, p=mix)
        likelihood = np.exp(-0.5 * (rng.normal(means[truth], 1.0)[:, None] - means[None, :]) ** 2)
        probs = likelihood * train_mix * tilt  # the model answers under its training mix, leaning as it leans
        return probs / probs.sum(1, keepdims=True), truth

    valid, _ = sample(4000, train_mix, np.ones(4))
    real, real_truth = sample(8000, real_mix, lean)
    assert np.allclose(trust.model_prior_from(valid, train_mix), valid.mean(0))  # labelled names alone: the mean
    base = trust.model_prior_from(valid, train_mix, real, real_truth)
    assert abs(base.sum() - 1) < 1e-9 and (base > 0).all()
    held, seen = np.array([True, True, True, False]), np.bincount(real_truth, minlength=4) / len(real_truth)
    assert np.allclose(trust.reweight(real, base, seen).mean(0)[held], seen[held], atol=1e-6)
    assert np.allclose(trust.reweight(valid, base, train_mix).mean(0)[~held], train_mix[~held], atol=1e-6)
    ratio = base[held] / (train_mix * lean)[held]
    assert ratio.max() / ratio.min() < 1.1  # the lean, found within 10 %
    fresh, fresh_truth = sample(8000, np.full(4, 0.25) * np.array([1, 1, 1, 0]) / 0.75, lean)
    even = np.full(4, 0.25)
    old = (trust.reweight(fresh, valid.mean(0), even).argmax(1) == fresh_truth).mean()
    assert (trust.reweight(fresh, base, even).argmax(1) == fresh_truth).mean() > old + 0.02


def test_reweighting_to_the_training_prior_changes_nothing():
    probs, _ = calibrated_task(50)
    prior = np.full(6, 1 / 6)
    assert np.allclose(trust.reweight(probs, prior, prior), probs)


@pytest.mark.parametrize("text", ["😀", "😀😀", "★☆", "123", "١٢٣", "'", "...", ";,", "∑∫", "©®™", "—–", "♥"])
def test_what_is_not_a_name_is_refused(text):
    with pytest.raises(BadName, match="no letters"):
        fold_checked(text)


def test_symbols_never_turn_into_words():
    assert fold("Nagy😀") == "Nagy"
    assert fold("O’Brien") == "O'Brien"
    assert fold("Anna\u00a0Maria") == "Anna Maria"
    assert fold("Müller2") == "Muller"


def test_trust_layer_is_stored_and_applied(trained):
    _, model = trained
    predictor = Predictor.load(model)
    layer = predictor.trust
    assert layer.complete and layer.oos is not None
    assert 0 < layer.min_confidence < 1 and 0 < layer.max_out_of_scope < 1
    assert layer.info["oos_locales"] == list(trust.OOS_LOCALES) and layer.info["n_oos_fit"] > 100
    meta = checkpoint.read_meta(model)
    assert meta["trust"]["conformal"]["method"] in {"lac", "aps", "raps"}
    assert abs(sum(meta["trust"]["train_prior"]) - 1) < 1e-6
    assert abs(sum(meta["trust"]["model_prior"]) - 1) < 1e-5  # the model's own prior, mean on validation
    assert np.allclose(layer.model_prior, meta["trust"]["model_prior"]) and layer.prior_base is layer.model_prior
    assert meta["temperature"] == layer.temperature  # evaluate's reliability diagram still reads it
    (p,) = predictor.predict(["Kalov"], top=2, coverage=0.9)
    assert p.set and p.set[0] == p.predictions[0]["language"]
    assert 0 <= p.out_of_scope <= 1 and p.abstained in (False, True)


def test_out_of_scope_features_do_not_depend_on_the_block_size(trained, monkeypatch):
    """The detector gathers its trigram log-probabilities a block of names at a time: every block gives each
    name the same numbers bit for bit, whatever the names beside it and however long they are."""
    predictor = Predictor.load(trained[1])
    names = [fold(n) for n in ["Ng", "Abl", "Schmidhuber", "Lopez-Garcia", "O'Neal", "X", "Zhou", "Wolfeschlegel"]] * 3
    probs = predictor.trust.probabilities(torch.from_numpy(predictor.log_probs(list(dict.fromkeys(names)))))
    probs = probs[[list(dict.fromkeys(names)).index(n) for n in names]]
    whole = predictor.trust.oos.features(probs, names)
    for block in (1, 2, 5):
        monkeypatch.setattr(trust.OutOfScope, "BLOCK", block)
        assert np.array_equal(predictor.trust.oos.features(probs, names), whole)
    assert len(whole) == len(names) and np.isfinite(whole).all()


def test_rewriting_a_checkpoint_keeps_its_detector_or_refuses(trained, tmp_path):
    """Re-saving a checkpoint (as bench/bundle.py does to add figures) must carry the trust layer's tensors;
    metadata with a detector but no ``trust=`` is refused rather than written without its tables."""
    _, model = trained
    ck = checkpoint.load(model)
    with pytest.raises(ValueError, match="trust="):
        checkpoint.save(tmp_path / "lost.safetensors", ck.model, ck.labels, ck.meta)
    assert not (tmp_path / "lost.safetensors").exists()
    layer = trust.Trust.from_checkpoint(ck.labels, ck.meta, ck.tensors)
    meta = {k: v for k, v in ck.meta.items() if k != "trust"}
    again = checkpoint.save(tmp_path / "again.safetensors", ck.model, ck.labels, meta, trust=layer)
    names = ["Kalov", "Qwrtz"]
    assert [p.out_of_scope for p in Predictor.load(again).predict(names)] == [
        p.out_of_scope for p in Predictor.load(model).predict(names)
    ]


def test_abstention_triggers_on_garbage(trained):
    _, model = trained
    predictor = Predictor.load(model)
    garbage = ["Xqzvbwxq", "Qqqqjjjj", "Zzxxkvwq", "Wbxqzjkv"]
    results = predictor.predict([*garbage, "Kalov", "McRaboo", "Saboez"], top=1)
    assert all(r.abstained and r.reason == "out-of-scope" for r in results[:4])
    assert min(r.out_of_scope for r in results[:4]) > max(r.out_of_scope for r in results[4:])
    assert all(r.predictions for r in results)  # an abstained name keeps its ranked languages
    relaxed = predictor.predict(garbage, top=1, max_out_of_scope=1.0, min_confidence=0.0)
    assert not any(r.abstained for r in relaxed)
    strict = predictor.predict(["Kalov"], top=1, min_confidence=1.0, max_out_of_scope=1.0)
    assert strict[0].abstained and strict[0].reason == "low-confidence"


def test_priors_reweight_and_auto_reports_the_mix(trained):
    _, model = trained
    predictor = Predictor.load(model)
    names = ["Kalov", "Miraov", "Tesuov", "McRaboo", "Saboez"]
    base = predictor.predict(names, top=4)
    tilted, used = predictor.predict_with_prior(names, top=4, prior={"Beta": 1.0, "Alpha": 0.001})
    assert used["Beta"] > 0.99 and used["Gamma"] == 0
    beta = [next(x["probability"] for x in p.predictions if x["language"] == "Beta") for p in tilted]
    beta_before = [next((x["probability"] for x in p.predictions if x["language"] == "Beta"), 0) for p in base]
    assert all(a >= b for a, b in zip(beta, beta_before, strict=True))
    _, estimated = predictor.predict_with_prior(names, prior="auto")
    assert abs(sum(estimated.values()) - 1) < 1e-6 and estimated["Alpha"] == max(estimated.values())


def test_an_older_checkpoint_without_trust_loads_and_predicts(tmp_path, caplog):
    model = build_model(ModelConfig(name="gru", hidden=8), 4)
    path = checkpoint.save(
        tmp_path / "old.safetensors", model, ["Alpha", "Beta", "Delta", "Gamma"], {"temperature": 1.5}
    )
    with caplog.at_level(logging.INFO, logger="nameorigin"):
        predictor = Predictor.load(path)
        (p,) = predictor.predict(["Kalov"], top=2, coverage=0.9, prior="uniform")
    assert predictor.temperature == 1.5
    assert p.predictions and p.out_of_scope is None and p.abstained is False and p.reason is None and p.set is None
    assert "no trust layer" in caplog.text and "no prediction sets" in caplog.text
    assert p.to_dict()["out_of_scope"] is None


def test_without_faker_the_detector_is_skipped_with_a_note(monkeypatch, caplog):
    def no_faker(*args, **kwargs):
        raise ImportError("No module named 'faker'")

    monkeypatch.setattr(trust, "faker_surnames", no_faker)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="gru", hidden=8), 2).eval()
    pairs = [("Kalov", "A"), ("Miraov", "A"), ("McRa", "B"), ("McTe", "B")]
    with caplog.at_level(logging.WARNING, logger="nameorigin"):
        layer = trust.calibrate(model, ["A", "B"], pairs, pairs)
    assert layer.oos is None and layer.conformal is not None and '-e ".[trust]"' in caplog.text


def test_real_in_scope_names_teach_the_detector_their_trigrams(monkeypatch):
    """A corpus's in-scope names join the detector's trigram models and its in-scope side: a real name of a
    model's language that the labelled names never spelt scores as less out of scope than without them, and the
    counts are recorded."""
    monkeypatch.setattr(trust, "faker_surnames", lambda *a, **k: [])
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="gru", hidden=8), 2).eval()
    pairs = [("Kalov", "A"), ("Miraov", "A"), ("McRa", "B"), ("McTe", "B")]
    others = ["Nguyenthi", "Tranthu", "Phamvan", "Levanthu", "Hoangthi", "Vuthanh", "Dangvan", "Buithu"]
    real = [(f"{s}ezsky", "A") for s in ("Dvor", "Nov", "Kral", "Svob", "Hor", "Cern", "Prok", "Ves")]
    plain = trust.calibrate(model, ["A", "B"], pairs, pairs, out_of_scope=others)
    taught = trust.calibrate(
        model, ["A", "B"], pairs, pairs, out_of_scope=others, real_train=real[:6], real_valid=real[6:]
    )
    assert (taught.info["n_in_scope_real_train"], taught.info["n_in_scope_real_valid"]) == (6, 2)
    assert (taught.info["model_prior_from"], plain.info["model_prior_from"]) == (
        "validation and corpus validation",
        "validation",
    )
    assert "n_in_scope_real_train" in plain.info and plain.info["n_in_scope_real_train"] == 0
    probe = ["Kopezsky", "Jelezsky"]
    probs = np.full((2, 2), 0.5)
    assert (taught.oos.score(probs, probe) < plain.oos.score(probs, probe)).all()
    assert taught.temperature == plain.temperature  # the rest of the layer stays fitted on the labelled names


def test_out_of_scope_names_split_by_hash_and_exclude_training_names():
    fit = trust.out_of_scope_names(part="fit")
    held = trust.out_of_scope_names(part="held-out")
    assert fit and held and not set(fit) & set(held)
    assert "Aaltonen" in fit + held
    assert "Aaltonen" not in trust.out_of_scope_names(["aaltonen"], part="all")


@pytest.mark.parametrize(
    "argv",
    [
        ["--coverage", "0"],
        ["--coverage", "1.5"],
        ["--min-confidence", "2"],
        ["--max-out-of-scope", "-0.1"],
        ["--coverage", "nan"],
    ],
)
def test_bad_numbers_exit_2(capsys, trained, argv):
    _, model = trained
    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", str(model), "Kalov", *argv])
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        (None, None, "expected uniform, auto"),
        ('{"Klingon": 1}', ".json", "unknown language"),
        ("Alpha,-1\nBeta,2\n", ".csv", ">= 0"),
        ("language,weight\nAlpha,0\nBeta,0\n", ".csv", "sum to 0"),
        ("Alpha,lots\n", ".csv", "not a number"),
        ("{not json", ".json", "not valid JSON"),
    ],
)
def test_bad_priors_exit_2(capsys, tmp_path, trained, content, suffix, message):
    _, model = trained
    prior = "martian"
    if content is not None:
        prior = tmp_path / f"prior{suffix}"
        prior.write_text(content)
    assert main(["predict", "--model", str(model), "Kalov", "--prior", str(prior)]) == 2
    err = capsys.readouterr().err
    assert message in err and "--prior" in err


def test_prior_files_json_and_csv(tmp_path):
    labels = ["Alpha", "Beta", "Gamma"]
    (tmp_path / "p.json").write_text('{"Alpha": 3, "Beta": 1}')
    (tmp_path / "p.csv").write_text("language,weight\nAlpha,3\nBeta,1\n")
    (tmp_path / "p.tsv").write_text("Alpha\t3\nBeta\t1\n")
    for name in ("p.json", "p.csv", "p.tsv"):
        assert np.allclose(trust.resolve_prior(str(tmp_path / name), labels), [0.75, 0.25, 0])


def test_cli_predict_shows_sets_and_abstention(capsys, tmp_path, trained):
    _, model = trained
    assert main(["predict", "--model", str(model), "--coverage", "0.9", "--json", "Kalov", "Xqzvbwxq"]) == 0
    kalov, garbage = json.loads(capsys.readouterr().out)
    assert set(kalov) >= {"out_of_scope", "abstained", "reason", "set"} and kalov["set"][0] == "Alpha"
    assert garbage["abstained"] and garbage["reason"] == "out-of-scope"
    assert main(["predict", "--model", str(model), "Kalov", "Xqzvbwxq", "--prior", "auto"]) == 0
    out, err = capsys.readouterr()
    assert "? out-of-scope" in out.splitlines()[1] and "?" not in out.splitlines()[0]
    assert "language mix estimated" in err
    src = tmp_path / "names.txt"
    src.write_text("Kalov\n😀\nXqzvbwxq\n")
    target = tmp_path / "out.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--input",
                str(src),
                "--output",
                str(target),
                "--coverage",
                "0.8",
                "--prior",
                "auto",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(target.open()))
    assert [r["abstained"] for r in rows] == ["false", "false", "true"]  # the error row: false, as in --json
    assert rows[2]["reason"] == "out-of-scope" and float(rows[2]["out_of_scope"]) > 0.5
    assert rows[0]["set"].split("|")[0] == "Alpha" and "folds to nothing" in rows[1]["error"]


def test_evaluate_reports_coverage_risk_and_out_of_scope(capsys, tmp_path, trained):
    folder, model = trained
    oos = tmp_path / "oos.txt"
    oos.write_text("\n".join(["Xqzvbwxq", "Qqqqjjjj", "Zzxxkvwq", "Wbxqzjkv", "Aaltonen", "Yilmaz", "😀"]) + "\n")
    png = tmp_path / "rc.png"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model),
                "--data",
                str(folder),
                "--json",
                "--risk-coverage",
                str(png),
                "--out-of-scope",
                str(oos),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    for c in ("0.8", "0.9", "0.95"):
        assert 0 < result["sets"][c]["coverage"] <= 1 and result["sets"][c]["mean_size"] >= 1
        assert set(result["sets"][c]["per_language"]) == {"Alpha", "Beta", "Gamma", "Delta"}
    assert result["out_of_scope"]["n"] == 6 and result["out_of_scope"]["unreadable"] == 1
    assert 0.5 < result["out_of_scope"]["auroc"] <= 1
    best = result["out_of_scope"]["best_thresholds"]  # thresholds chosen on these names: a bound
    assert best["in_scope_abstained"] <= 0.10 and best["out_of_scope_abstained"] >= 0
    assert png.stat().st_size > 1000
    assert main(["evaluate", "--model", str(model), "--data", str(folder)]) == 0
    assert "cov@0.9" in capsys.readouterr().out
    # the out-of-scope names may come in any input predict reads: here a CSV whose header names the column
    table = tmp_path / "oos.csv"
    table.write_text("id,surname\n" + "".join(f"{i},{n}\n" for i, n in enumerate(oos.read_text().split())))
    assert main(["evaluate", "--model", str(model), "--data", str(folder), "--json", "--out-of-scope", str(table)]) == 0
    assert json.loads(capsys.readouterr().out)["out_of_scope"]["auroc"] == result["out_of_scope"]["auroc"]


@pytest.fixture(scope="module")
def client(trained):
    return TestClient(create_app(model_path=trained[1]), raise_server_exceptions=False)


def test_http_answers_carry_the_trust_keys(client):
    r = client.get("/api/predict", params={"name": "Xqzvbwxq", "coverage": 0.9, "prior": "auto"})
    assert r.status_code == 200
    body = r.json()
    (result,) = body["results"]
    assert result["abstained"] and result["reason"] == "out-of-scope" and result["set"]
    assert abs(sum(body["prior"].values()) - 1) < 1e-6
    r = client.post("/api/predict", json={"names": ["Kalov", "McRaboo"], "prior": {"Alpha": 1, "Beta": 1}})
    assert r.status_code == 200 and r.json()["prior"]["Gamma"] == 0
    assert all(x["set"] is None for x in r.json()["results"])


@pytest.mark.parametrize("params", [{"coverage": 0}, {"coverage": 1.5}, {"coverage": "x"}, {"prior": "martian"}])
def test_http_bad_get_values_are_422(client, params):
    assert client.get("/api/predict", params={"name": "Kalov", **params}).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"coverage": 0},
        {"coverage": 1},
        {"prior": "martian"},
        {"prior": {"Klingon": 1}},
        {"prior": {"Alpha": -1}},
        {"prior": {"Alpha": 0}},
        {"prior": {}},
    ],
)
def test_http_bad_post_values_are_422_as_the_schema_says(client, body):
    r = client.post("/api/predict", json={"names": ["Kalov"], **body})
    assert r.status_code == 422 and any("prior" in e["loc"] or "coverage" in e["loc"] for e in r.json()["detail"])
    prior = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]["properties"]["prior"]
    objects = [s for s in prior["anyOf"] if s.get("type") == "object"]
    assert objects[0]["propertyNames"]["enum"] == ["Alpha", "Beta", "Delta", "Gamma"]
    assert objects[0]["minProperties"] == 1


def test_page_shows_the_set_and_the_unsure_note(client):
    page = client.get("/").text
    assert "coverage=0.9" in page and "not one of the 18 languages" in page and 'id="set"' in page


def test_auroc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    from nameorigin.evaluation import auroc

    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 5, 200).astype(float), rng.integers(1, 6, 150).astype(float)
    expected = roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[neg, pos])
    assert abs(auroc(neg, pos) - expected) < 1e-12


def test_risk_coverage_and_selective_accuracy(tmp_path):
    from nameorigin import plots
    from nameorigin.evaluation import risk_coverage, selective_accuracy

    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([True, True, False, True, False])
    coverage, risk = risk_coverage(confidence, correct)
    assert coverage == [0.2, 0.4, 0.6, 0.8, 1.0] and risk[-1] == 0.4 and risk[0] == 0.0
    assert selective_accuracy(confidence, correct, 0.4) == 1.0
    fig = plots.risk_coverage({"top probability": (coverage, risk)}, path=tmp_path / "rc.png")
    assert "top probability" in plots.figure_text(fig) and (tmp_path / "rc.png").stat().st_size > 1000


def test_huge_prior_weights_do_not_overflow():
    assert np.allclose(trust.resolve_prior({"Alpha": 1e308, "Beta": 1e308}, ["Alpha", "Beta"]), [0.5, 0.5])


def test_out_of_scope_features_equal_a_name_by_name_reference():
    """The detector's features, computed for a whole batch at once, equal the same sums taken one name and one
    trigram at a time from the tables (names of different lengths, one letter, a space and an apostrophe)."""
    train = ["Abel", "Zhou", "Rossi", "Kowalski", "Li", "Nguyen", "O'Neill", "de la Cruz"]
    language = np.array([0, 1, 2, 3, 1, 4, 0, 2])
    keys, counts = trust.trigram_counts(train, language)
    background = ["Virtanen", "Nagy", "Yilmaz"]
    bg_keys, bg_counts = trust.trigram_counts(background, np.full(len(background), 5))
    n_features = len(trust.OutOfScope.FEATURES)
    detector = trust.OutOfScope(
        np.concatenate([keys, bg_keys]),
        np.concatenate([counts, bg_counts]),
        5,
        1.0,
        1.0,
        np.zeros(n_features),
        np.ones(n_features),
        np.zeros(n_features),
        0.0,
    )
    names = ["Abel", "x", "Kowalczyk", "O'Hara", "van der Berg", "Qwrtz"]
    probs = np.random.default_rng(0).dirichlet(np.ones(5), len(names))
    tables = trust.trigram_tables(detector.keys, detector.counts, 5, 1.0, 1.0)  # (L + 2, K**3)
    got = detector.features(probs, names)
    for i, name in enumerate(names):
        seq = [1, 1] + [trust._CODE[ord(c)] for c in name] + [2]
        codes = [(seq[j] * trust.K + seq[j + 1]) * trust.K + seq[j + 2] for j in range(len(seq) - 2)]
        surprise = -tables[:, codes].astype(np.float64)  # (L + 2, letters + 1)
        mean = surprise.mean(1)
        top = int(probs[i].argmax())
        entropy = -(probs[i] * np.log(probs[i])).sum()
        want = [mean[-2], surprise[-2].max(), mean[:5].min(), mean[top], mean[-1], probs[i].max(), entropy]
        np.testing.assert_allclose(got[i], want, rtol=1e-6, atol=1e-6)
    assert detector.features(probs[:0], []).shape == (0, n_features)


def test_the_shipped_model_has_the_whole_trust_layer():
    layer = Predictor.load().trust
    assert layer.complete and layer.oos is not None and layer.model_prior is not None
    assert layer.min_confidence is not None and layer.max_out_of_scope is not None


def test_a_feature_stored_with_std_0_scores_finite_not_nan():
    """A degenerate model (a worksheet loop of few steps: every answer uniform) has a constant feature whose
    std rounds to 0 in the checkpoint: its score was NaN (invalid JSON, never abstaining) with warnings."""
    import copy
    import warnings

    from nameorigin import Predictor

    p = Predictor.load(first=False)
    oos = copy.copy(p.trust.oos)
    oos.std = np.array(oos.std, dtype=np.float64)
    oos.std[0] = 0.0
    probs = p.trust.probabilities(p.log_probs(["Hinton", "Kalov"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = oos.score(probs, ["Hinton", "Kalov"])
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
