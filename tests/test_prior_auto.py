"""``prior="auto"`` on few names: EM shrunk towards the model's own mix, so that a handful of names cannot run
away with it, while a large input still finds its own mix."""

import numpy as np
import pytest

from conftest import make_names, train_tiny
from nameorigin import Predictor
from nameorigin.cli import main
from nameorigin.trust import estimate_prior

MIX = {"Alpha": 0.55, "Beta": 0.25, "Gamma": 0.15, "Delta": 0.05}  # the training data is 1/4 each


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    _, path = train_tiny(
        tmp_path_factory.mktemp("em"), "gru", "--hidden", "8", "--epochs", "4", "--lr", "0.02", "--batch-size", "16"
    )
    return Predictor.load(path)


def held_out() -> dict[str, list[str]]:
    seen = {n for names in make_names().values() for n in names}
    return {lang: [n for n in names if n not in seen] for lang, names in make_names(60, seed=7).items()}


def test_auto_on_few_names_stays_near_the_model_prior_and_many_names_find_their_mix(predictor):
    pool = held_out()
    langs = list(MIX)
    truth = np.array([MIX[lang] for lang in predictor.labels])
    errors, gaps, runaway = {}, {}, []
    for size in (3, 30, 3000):
        l1, gap = [], []
        for seed in range(100):
            rng = np.random.default_rng(seed)
            drawn = rng.choice(langs, size=size, p=[MIX[x] for x in langs])
            names = [pool[lang][rng.integers(len(pool[lang]))] for lang in drawn]
            auto = predictor.predict_columns(names, 1, prior="auto")
            plain = predictor.predict_columns(names, 1)
            mix = predictor.estimate_prior(names)
            l1.append(np.abs(np.array([mix[x] for x in predictor.labels]) - truth).sum())
            if size == 3:  # the same EM without the shrinkage, for comparison
                probs = predictor.probabilities(names).probs.double().numpy()
                raw = estimate_prior(probs, predictor.trust.prior_base, start=predictor.trust.train_prior, strength=0)
                runaway.append(np.abs(raw - truth).sum())
            right = [np.mean(np.array(t.column("language_1").to_pylist()) == drawn) for t in (auto, plain)]
            gap.append(right[0] - right[1])
        errors[size], gaps[size] = np.mean(l1), np.mean(gap)
    assert errors[3] > errors[30] > errors[3000], errors
    assert errors[3] < np.mean(runaway) - 0.1, (errors, np.mean(runaway))  # unshrunk EM runs away on 3 names
    assert errors[3000] < 0.1, errors
    assert all(g >= -0.01 for g in gaps.values()), gaps  # auto never costs more than 1 point of accuracy


def test_auto_on_three_names_says_what_it_rests_on(capsys, predictor, tmp_path):
    path = tmp_path / "m.safetensors"
    from nameorigin import checkpoint

    checkpoint.save(path, predictor.model, predictor.labels, predictor.checkpoint.meta, trust=predictor.trust)
    assert main(["predict", "--model", str(path), "--prior", "auto", "Kalov", "Nabov", "Tesuez"]) == 0
    err = capsys.readouterr().err
    assert "estimated on these 3 distinct name(s)" in err and "as if it were 20 more names" in err
    assert "the names weigh 13%" in err


def test_auto_reports_the_names_it_rests_on_in_json_and_on_stderr_for_a_file(capsys, predictor, tmp_path):
    """``--json`` stays a list of results; with ``--prior auto`` each says how many distinct names the estimate
    rested on (names that fold alike count once, unreadable ones not at all). ``--input`` says it on stderr."""
    path = tmp_path / "m.safetensors"
    from nameorigin import checkpoint

    checkpoint.save(path, predictor.model, predictor.labels, predictor.checkpoint.meta, trust=predictor.trust)
    args = ["predict", "--model", str(path), "--json", "--top", "1"]
    assert main([*args, "--prior", "auto", "Kalov", "Kálov", "Nabov", "Tesuez", "Nabov"]) == 0
    rows = __import__("json").loads(capsys.readouterr().out)
    assert len(rows) == 5 and {r["prior_names"] for r in rows} == {3}
    assert main([*args, "Kalov", "Nabov"]) == 0  # without auto the rows are as they were
    assert all("prior_names" not in r for r in __import__("json").loads(capsys.readouterr().out))
    src = tmp_path / "in.txt"
    src.write_text("Kalov\nNabov\nKalov\nTesuez\nMcRaboo\n", encoding="utf-8")
    assert main(["predict", "--model", str(path), "--input", str(src), "--prior", "auto", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"estimated on {src}, 4 distinct name(s) (EM, shrunk" in err and "the names weigh 17%" in err


def test_the_api_says_how_many_names_prior_auto_rests_on(predictor):
    from fastapi.testclient import TestClient

    from nameorigin.server import create_app

    client = TestClient(create_app(predictor), raise_server_exceptions=False)
    r = client.post("/api/predict", json={"names": ["Kalov", " Kalov ", "Nabov", "1234"], "prior": "auto"})
    assert r.status_code == 200 and r.json()["prior_names"] == 2 and r.json()["prior"]
    r = client.get("/api/predict", params={"name": "Tesuez", "prior": "auto"})
    assert r.status_code == 200 and r.json()["prior_names"] == 1
    r = client.post("/api/predict", json={"names": ["Kalov", "Nabov"]})
    assert r.status_code == 200 and r.json()["prior_names"] is None


def test_a_name_in_many_chunks_is_one_name_of_evidence(predictor, tmp_path):
    """Read in chunks (a file's batches), the estimate is the whole input's: a name that comes back in a later
    chunk adds rows to its weight, not names to the evidence that the shrinkage counts."""
    from nameorigin import frame

    names = ["Kalov", "Nabov", "Tesuez", "McRaboo", "Kalov"] * 40  # 200 rows, 4 distinct names
    _, used = predictor.predict_with_prior(names, prior="auto")  # one call: every row, each name once
    assert predictor.estimate_prior(names, chunk=7) == pytest.approx(used, abs=1e-9)
    src = tmp_path / "many.txt"
    src.write_text("\n".join(names) + "\n", encoding="utf-8")
    mix, distinct = frame.file_prior(predictor, frame.FileJob(input=str(src), output=None, chunk=7))
    assert distinct == 4 and mix == pytest.approx(used, abs=1e-9)
