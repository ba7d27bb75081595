"""The bundled model and the Python API."""

import pytest

from nameorigin import Predictor
from nameorigin.predict import default_model_path
from nameorigin.text import BadName


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load()


def test_bundled_model_is_small_and_loads(predictor):
    from nameorigin.predict import default_first_model_path

    sizes = [p.stat().st_size for p in (default_model_path(), default_first_model_path()) if p and p.exists()]
    assert sizes[0] < 2_200_000 and sum(sizes) <= 3_000_000  # issue 23: the assets in 3 MB in all
    assert len(predictor.labels) == 18
    assert predictor.checkpoint.meta["training"]["mode"] == "batched"


def test_bundled_model_knows_the_famous_three(predictor):
    hinton, schmidhuber, zhou = predictor.predict(["Hinton", "Schmidhuber", "Zhou"], top=3)
    assert hinton.predictions[0]["language"] in {"English", "Scottish"}
    assert schmidhuber.predictions[0]["language"] == "German"
    assert zhou.predictions[0]["language"] == "Chinese"


def test_probabilities_sum_to_one_over_all_languages(predictor):
    probs, _ = predictor.probabilities(["Hinton", "Nakamura"])
    assert probs.shape == (2, 18)
    assert abs(float(probs.sum(1).min()) - 1) < 1e-5 and abs(float(probs.sum(1).max()) - 1) < 1e-5
    p = predictor.predict(["Nakamura"], top=18)[0]
    assert abs(sum(x["probability"] for x in p.predictions) - 1) < 1e-5
    assert [x["probability"] for x in p.predictions] == sorted((x["probability"] for x in p.predictions), reverse=True)


def test_batch_and_one_by_one_agree(predictor):
    names = ["Hinton", "Ó Súilleabháin", "Шевченко", "Nguyen", "Abl"]
    batch = predictor.predict(names, top=2)
    for name, p in zip(names, batch, strict=True):
        single = predictor.predict_one(name, top=2)
        assert single.predictions[0]["language"] == p.predictions[0]["language"]
        assert abs(single.predictions[0]["probability"] - p.predictions[0]["probability"]) < 1e-5


def test_bad_names_get_errors_not_exceptions(predictor):
    good, bad, long = predictor.predict(["Hinton", "42", "x" * 10_000])
    assert good.error is None and bad.error and "folds to nothing" in bad.error and not bad.predictions
    assert "characters long" in long.error
    with pytest.raises(BadName):
        predictor.predict_one("42")


def test_stream_is_lazy(predictor):
    def names():
        yield "Hinton"
        yield "Zhou"
        raise AssertionError("read past what was asked for")

    stream = predictor.stream(names(), chunk=1)
    assert next(stream).name == "Hinton"


@pytest.mark.parametrize(
    "names, top", [(["Hinton"], 0), (["Hinton"], "2"), (["Hinton"], True), (["Hinton"], -1), (None, 3)]
)
def test_predict_refuses_a_bad_top_or_no_names_naming_the_parameter(names, top):
    """The command line refuses --top 0; the library did not (0 gave one language, "2" a bare TypeError)."""
    from nameorigin import Predictor
    from nameorigin.errors import InputError

    with pytest.raises(InputError) as e:
        Predictor.load().predict(names, top)
    assert e.value.param == ("names" if names is None else "top")


@pytest.mark.parametrize(
    "args, kwargs, said",
    [((5,), {}, "path must be a checkpoint file's path"), ((), {"first": 3.5}, "first must be a checkpoint")],
)
def test_a_load_of_something_that_is_no_path_says_which_argument(args, kwargs, said):
    with pytest.raises(TypeError, match=said):  # was Path()'s bare "expected str, bytes or os.PathLike object"
        Predictor.load(*args, **kwargs)
