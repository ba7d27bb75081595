"""The checkpoint records how its names were folded, and a Predictor folds with that scheme."""

import pytest

from conftest import train_tiny
from nameorigin import checkpoint, text
from nameorigin.checkpoint import CheckpointError
from nameorigin.models import ModelConfig, build_model
from nameorigin.predict import Predictor

LABELS = ["Alpha", "Beta", "Gamma"]


def _save(tmp_path, meta):
    model = build_model(ModelConfig(name="gru", hidden=8), len(LABELS))
    return checkpoint.save(tmp_path / "m.safetensors", model, LABELS, meta)


def test_training_records_the_folding(tmp_path):
    _, path = train_tiny(tmp_path, "gru", "--epochs", "1")
    meta = checkpoint.read_meta(path)
    assert meta["folding"] == text.folding_info(text.DEFAULT_FOLD_SCHEME)
    assert meta["folding"]["packages"]["anyascii"]


@pytest.mark.parametrize(
    "meta, scheme, folded",
    [
        ({}, 1, "gimminjun"),  # no record: today's scheme
        ({"folding": text.folding_info(1)}, 1, "gimminjun"),
        ({"folding": text.folding_info(2)}, 2, "Kim Minjun"),
    ],
)
def test_the_predictor_folds_with_the_checkpoint_scheme(tmp_path, meta, scheme, folded):
    p = Predictor.load(_save(tmp_path, meta), first=False)
    assert p.fold_scheme == scheme
    r = p.predict(["김민준", "Smith"], name_type="surname")
    assert r[0].folded == folded and r[1].folded == "Smith" and not r[0].error
    table = p.predict_columns(["김민준", "😀"])
    assert table.column("error").to_pylist()[0] is None and "folds to nothing" in table.column("error").to_pylist()[1]
    # split into its parts (auto, the default), each part is folded as the model folds: the readers only for
    # a model of scheme 2, trained with them
    family = table.column("family_read").to_pylist()[0]
    assert family == ("Kim" if scheme == 2 else "gim")


def test_a_checkpoint_of_an_unknown_scheme_is_refused(tmp_path):
    path = _save(tmp_path, {"folding": {"scheme": 99}})
    with pytest.raises(CheckpointError, match="unknown folding scheme 99"):
        checkpoint.load(path)
