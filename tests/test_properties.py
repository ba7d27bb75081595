"""Property-based tests (Hypothesis) and a fuzz of the HTTP API from its own OpenAPI schema (Schemathesis)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nameorigin.data import DataError, read_labelled
from nameorigin.predict import Predictor
from nameorigin.text import ALPHABET, BadName, encode, fold, fold_checked

PREDICTOR = Predictor.load()


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fold_gives_alphabet_letters_or_bad_name(name):
    folded = fold(name)
    assert set(folded) <= set(ALPHABET)
    try:
        checked = fold_checked(name)
    except BadName as e:
        assert str(e)
        return
    assert checked and len(encode(checked)) == len(checked)


@given(st.lists(st.text(max_size=80), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_predict_gives_probabilities_summing_to_one_or_an_error(names):
    """Read whole as surnames, a name is refused exactly when it cannot be folded; parsed (auto, the default),
    each name still gets probabilities summing to one or an error of its own (an initial alone, ``A``, is
    one)."""
    results = PREDICTOR.predict(names, top=18, name_type="surname")
    assert [r.name for r in results] == names
    for r in results:
        if r.error:
            assert not r.predictions
            with pytest.raises(BadName):
                fold_checked(r.name)
        else:
            assert abs(sum(p["probability"] for p in r.predictions) - 1) < 1e-4
    parsed = PREDICTOR.predict(names, top=18)
    assert [r.name for r in parsed] == names
    for r, whole in zip(parsed, results, strict=True):
        assert bool(r.error) != bool(r.predictions) and (not whole.error or r.error)
        if r.predictions:
            assert abs(sum(p["probability"] for p in r.predictions) - 1) < 1e-4


@given(st.binary(max_size=400), st.sampled_from(["names.csv", "names.tsv", "names.txt", "Lang.txt"]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_read_labelled_gives_pairs_or_a_clear_data_error(tmp_path_factory, raw, filename):
    folder = tmp_path_factory.mktemp("raw")
    target = folder / filename
    target.write_bytes(raw)
    source = folder if filename == "Lang.txt" else target
    try:
        pairs = read_labelled(source)
    except DataError as e:
        assert str(folder) in str(e)
        return
    assert pairs and all(isinstance(n, str) and n and isinstance(lang, str) and lang for n, lang in pairs)


# ------------------------------------------------------------------------------------- the HTTP API

schemathesis = pytest.importorskip("schemathesis")
from nameorigin.server import create_app  # noqa: E402

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(PREDICTOR))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_every_request_within_its_schema(case):
    response = case.call()
    assert response.status_code < 500, response.text
    # Every check, positive data acceptance included: what the schema allows is answered (a name that folds to
    # no letters gets an error entry in its place), and what it refuses is refused.
    case.validate_response(response)
