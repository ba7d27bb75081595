"""Tests on the worksheets' data set, read from NAMEORIGIN_DATA (skipped when it is not set)."""
import os
from pathlib import Path

import pytest
import torch

from nameorigin import data
from nameorigin.evaluation import metrics
from nameorigin.models import batched_log_probs, build_model
from nameorigin.training import resolve_settings, train_batched

DATA = os.environ.get("NAMEORIGIN_DATA")
pytestmark = pytest.mark.skipif(not DATA or not Path(DATA).is_dir(), reason="NAMEORIGIN_DATA is not set")


@pytest.fixture(scope="module")
def pairs():
    return data.read_labelled(DATA)


def test_the_data_set_is_the_tutorials(pairs):
    assert data.download_tutorial_data.__module__  # the checksums below are the ones the download checks
    assert data._verify_names_dir(Path(DATA)) is None
    assert len(pairs) == 20_074
    assert len(data.languages(pairs)) == 18
    distinct = data.dedupe(pairs)
    assert 17_900 < len(distinct) <= 17_994  # transliteration can merge a few more spellings than ASCII folding
    assert len({n for n, _ in distinct}) < len(distinct)  # some names stand under several languages


def test_the_default_split_is_leak_free_and_stratified(pairs):
    parts = data.split(pairs, (0.8, 0.1, 0.1), seed=0)
    train, test = {n for n, _ in parts.train}, {n for n, _ in parts.test}
    assert not train & test
    share = data.counts(parts.test)["Arabic"] / sum(data.counts(parts.test).values())
    assert 0.003 < share < 0.012  # 108 distinct Arabic names among ~17,400: stratified, not 10 % of raw lines


def test_default_gru_reaches_the_backbone_targets_on_held_out_names(pairs):
    """The issue's bar: the default batched gru, 80 % of distinct names to train, 20 % held out."""
    torch.set_num_threads(2)
    outer = data.split(pairs, (0.8, 0.0, 0.2), seed=0)
    inner = data.split(outer.train, (0.9, 0.1, 0.0), seed=0)
    labels = data.languages(pairs)
    settings = resolve_settings(None)  # what `nameorigin train` does with no flags
    assert settings.model.name == "gru" and settings.model.hidden == 128
    torch.manual_seed(settings.train.seed)
    model = build_model(settings.model, len(labels))
    history = train_batched(model, data.encode_pairs(inner.train, labels), data.encode_pairs(inner.valid, labels),
                            labels, settings.train, progress=False)
    test = data.encode_pairs(outer.test, labels)
    lp, _ = batched_log_probs(model, test.tokens, test.lengths)
    result = metrics(test.labels, lp.argmax(1), labels)
    assert history.best_epoch is not None
    assert result["accuracy"] >= 0.80 and result["macro_f1"] >= 0.50, result
