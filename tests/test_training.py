import random
import re
from dataclasses import replace

import pytest
import torch

from nameorigin import data
from nameorigin import reference as seeds  # the seeds' code, reimplemented once for tests and benchmarks
from nameorigin.models import REGISTRY, ModelConfig, build_model
from nameorigin.text import ALPHABET
from nameorigin.training import TrainConfig, WorksheetConfig, category_lines, train_batched, train_worksheet, validate


@pytest.fixture
def tiny_split(tiny_dir):
    pairs = data.dedupe(data.read_labelled(tiny_dir))
    parts = data.split(pairs, (0.7, 0.15, 0.15), seed=0)
    return parts, data.languages(pairs)


@pytest.mark.parametrize("name", [n for n in REGISTRY if n != "ngram-lr"])  # ngram-lr: logistic regression
def test_batched_trainer_learns_the_tiny_languages(tiny_split, name):
    parts, labels = tiny_split
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, hidden=24), len(labels))
    train = data.encode_pairs(parts.train, labels, noise_room=3)
    valid = data.encode_pairs(parts.valid, labels)
    lr = {"tutorial-rnn": 0.003, "transformer": 0.003}.get(name, 0.02)
    config = TrainConfig(
        epochs=25, batch_size=16, lr=lr, patience=0, noise=2 if name == "gru-attention" else 0, log_every=5
    )
    history = train_batched(model, train, valid, labels, config, progress=False)
    assert len(history.epochs) == 25 and history.best_epoch is not None
    assert history.names_seen == 25 * len(train)
    assert history.losses[-1] < history.losses[0]
    assert history.best["accuracy"] >= 0.8, history.best
    # the model keeps the best epoch's weights
    assert validate(model, valid, labels)["accuracy"] == pytest.approx(history.best["accuracy"])


def test_balanced_sampling_and_early_stopping(tiny_split):
    parts, labels = tiny_split
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="gru", hidden=16), len(labels))
    train = data.encode_pairs(parts.train, labels)
    valid = data.encode_pairs(parts.valid, labels)
    valid.labels = valid.labels[torch.randperm(len(valid), generator=torch.Generator().manual_seed(0))]  # unlearnable
    config = TrainConfig(epochs=50, batch_size=16, lr=0.05, patience=2, sampling="balanced", select="loss")
    history = train_batched(model, train, valid, labels, config, progress=False)
    assert len(history.epochs) < 50  # stopped early
    assert history.best_epoch == min(history.epochs, key=lambda e: e["loss"])["epoch"]


def test_same_seed_same_run(tiny_split):
    parts, labels = tiny_split
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = build_model(ModelConfig(name="gru", hidden=8), len(labels))
        train = data.encode_pairs(parts.train, labels, noise_room=3)
        h = train_batched(
            model, train, None, labels, TrainConfig(epochs=2, seed=5, noise=2, log_every=2), progress=False
        )
        runs.append(h.losses)
    assert runs[0] == runs[1]


# --- the worksheet loop, against the seeds' code ------------------------------------------------------


@pytest.mark.parametrize("name, seed_class", [("rnn", seeds.RNNClassifier), ("gru", seeds.GRUClassifier)])
def test_worksheet_loop_gives_the_seeds_results(tiny_dir, name, seed_class):
    pairs = data.dedupe(data.read_labelled(tiny_dir))
    cat_lines = category_lines(pairs)
    labels = list(cat_lines)
    torch.manual_seed(3)
    seed_model = seed_class(len(ALPHABET), 16, len(labels))
    _, expected = seeds.seed_train(seed_model, cat_lines, 400, noise=3, plot_every=50, rng=random.Random(11))
    torch.manual_seed(3)
    ours = build_model(ModelConfig(name=name, hidden=16), len(labels))
    config = WorksheetConfig(iters=400, noise=3, plot_every=50, print_every=100, seed=3)
    history = train_worksheet(ours, cat_lines, labels, config, rng=random.Random(11), printer=None)
    assert history.loss_steps == list(range(50, 401, 50))
    torch.testing.assert_close(torch.tensor(history.losses), torch.tensor(expected), atol=1e-4, rtol=1e-4)


def test_worksheet_loop_prints_the_seeds_lines(tiny_dir):
    pairs = data.dedupe(data.read_labelled(tiny_dir))
    cat_lines = category_lines(pairs)
    labels = list(cat_lines)
    lines = []
    model = build_model(ModelConfig(name="gru", hidden=8), len(labels))
    train_worksheet(
        model, cat_lines, labels, WorksheetConfig(iters=300, print_every=100, plot_every=30), printer=lines.append
    )
    assert len(lines) == 3
    pattern = re.compile(
        r"^(100|200|300) (33|66|100)% \(\d+m \d+s\) \d+\.\d{4} \S+ / (Alpha|Beta|Gamma|Delta) "
        r"(✓|✗ \((Alpha|Beta|Gamma|Delta)\))$"
    )
    assert all(pattern.match(line) for line in lines), lines


def test_fit_trains_each_ensemble_member_from_its_own_seed(tiny_split):
    from nameorigin.training import fit, resolve_settings

    parts, labels = tiny_split
    valid = data.encode_pairs(parts.valid, labels)
    settings = resolve_settings(
        None,
        model={"name": "gru", "hidden": 16, "members": 2},
        train={"epochs": 4, "batch_size": 16, "lr": 0.02, "patience": 0, "seed": 3},
    )
    lines = []
    model, history, _ = fit(settings, parts.train, valid, labels, printer=lines.append)
    assert [row["member"] for row in history.epochs] == [0] * 4 + [1] * 4
    assert history.names_seen == 2 * 4 * len(parts.train)
    assert history.loss_steps == sorted(history.loss_steps) and len(history.losses) == len(history.loss_steps)
    assert lines[0].startswith("member 1/2 (seed 3) trained in") and lines[1].startswith("member 2/2 (seed 4)")
    assert history.best["accuracy"] == pytest.approx(validate(model, valid, labels)["accuracy"])
    # member 1 is what a single model trained from seed 4 would be
    one = resolve_settings(
        None,
        model={"name": "gru", "hidden": 16},
        train={"epochs": 4, "batch_size": 16, "lr": 0.02, "patience": 0, "seed": 4},
    )
    torch.manual_seed(3)
    build_model(one.model, len(labels))  # member 0's draw of initial weights
    single = build_model(one.model, len(labels))
    train = data.encode_pairs(parts.train, labels)
    train_batched(single, train, valid, labels, one.train, progress=False)
    for a, b in zip(single.state_dict().values(), model.members[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def _settings(**model):
    from nameorigin.training import resolve_settings

    return resolve_settings(
        None, model={"hidden": 16, **model}, train={"epochs": 4, "batch_size": 16, "lr": 0.02, "patience": 0, "seed": 1}
    )


def test_fit_ngram_lr_learns_the_tiny_languages(tiny_split):
    from nameorigin.training import fit

    parts, labels = tiny_split
    valid = data.encode_pairs(parts.valid, labels)
    model, history, _ = fit(_settings(name="ngram-lr"), parts.train, valid, labels)
    assert model.config.vocab == model.vocab.numel() > 100
    assert history.kind == "ngram-lr" and history.best["accuracy"] >= 0.9
    train = data.encode_pairs(parts.train, labels)
    assert validate(model, train, labels)["accuracy"] == 1.0


def test_distillation_weight_zero_is_training_on_labels_alone(tiny_split):
    from dataclasses import replace

    from nameorigin.training import fit

    parts, labels = tiny_split
    plain = _settings(name="gru")
    teacher = torch.log_softmax(torch.randn(len(parts.train), len(labels)), 1)
    alone, _, _ = fit(plain, parts.train, None, labels)
    zero, _, _ = fit(
        replace(plain, train=replace(plain.train, distill_weight=0.0)), parts.train, None, labels, soft_targets=teacher
    )
    taught, _, _ = fit(
        replace(plain, train=replace(plain.train, distill_weight=1.0)), parts.train, None, labels, soft_targets=teacher
    )
    for a, b in zip(alone.state_dict().values(), zero.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(alone.h2o.weight, taught.h2o.weight)


def test_distillation_alone_makes_the_student_follow_the_teacher(tiny_split):
    from dataclasses import replace

    from nameorigin.training import distillation_loss, fit

    parts, labels = tiny_split
    settings = _settings(name="gru")
    settings.train = replace(settings.train, distill_weight=1.0, epochs=15, label_smoothing=0.0, class_weight=0.0)
    teacher = torch.full((len(parts.train), len(labels)), -8.0)
    teacher[:, 2] = 0.0  # the teacher says: always the third language
    student, _, _ = fit(settings, parts.train, None, labels, soft_targets=teacher)
    train = data.encode_pairs(parts.train, labels)
    lp, _ = student(train.tokens, train.lengths)
    assert (lp.argmax(1) == 2).float().mean() > 0.95
    assert float(distillation_loss(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)


def test_folds_keep_a_name_with_two_labels_together_and_cover_every_pair():
    from nameorigin.training import fold_of_each

    pairs = [(f"N{i}", "A") for i in range(50)] + [("N3", "B"), ("N7", "B")]
    fold = fold_of_each(pairs, 4, seed=0)
    assert fold[3] == fold[50] and fold[7] == fold[51]
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3]
    per_fold = torch.bincount(fold[:50])  # distinct names: as even as can be
    assert int(per_fold.max() - per_fold.min()) <= 1


def test_out_of_fold_probabilities_come_from_teachers_that_did_not_see_the_name(tiny_split):
    from nameorigin.training import fit, fold_of_each, out_of_fold_log_probs

    parts, labels = tiny_split
    teacher = _settings(name="ngram-lr")
    oof = out_of_fold_log_probs(teacher, parts.train, labels, folds=3, seed=5)
    fold = fold_of_each(parts.train, 3, seed=5)
    rest = [p for p, f in zip(parts.train, fold.tolist(), strict=True) if f != 0]
    model, _, _ = fit(teacher, rest, None, labels)
    held = data.encode_pairs([p for p, f in zip(parts.train, fold.tolist(), strict=True) if f == 0], labels)
    torch.testing.assert_close(oof[fold == 0], model(held.tokens, held.lengths)[0])
    with pytest.raises(ValueError, match="folds 1"):
        out_of_fold_log_probs(teacher, parts.train, labels, folds=1)


def test_fit_trains_a_mixed_ensemble_and_fits_its_weights_on_validation(tiny_split):
    from nameorigin.models import Ensemble
    from nameorigin.training import Settings, fit

    parts, labels = tiny_split
    valid = data.encode_pairs(parts.valid, labels)
    members = [_settings(name="gru"), _settings(name="cnn"), _settings(name="ngram-lr")]
    settings = Settings(model=members[0].model, train=members[0].train, worksheet=False, prune=0, members=members)
    lines = []
    model, history, _ = fit(settings, parts.train, valid, labels, printer=lines.append)
    assert isinstance(model, Ensemble) and [m.config.name for m in model.members] == ["gru", "cnn", "ngram-lr"]
    assert float(model.weights.sum()) == pytest.approx(1.0) and lines[-1].startswith("member weights (temperatures)")
    assert history.best["accuracy"] == pytest.approx(validate(model, valid, labels)["accuracy"])


def test_a_preset_teacher_trains_out_of_fold_and_weight_zero_skips_it(tiny_split):
    from dataclasses import replace

    from nameorigin.training import fit

    parts, labels = tiny_split
    student = _settings(name="gru")
    student.teacher = _settings(name="ngram-lr")
    student.train = replace(student.train, teacher_folds=2)
    lines = []
    fit(student, parts.train, None, labels, printer=lines.append)
    assert [line.split(" (")[0] for line in lines] == ["teacher 1/2", "teacher 2/2"]
    lines.clear()
    fit(
        replace(student, train=replace(student.train, distill_weight=0.0)),
        parts.train,
        None,
        labels,
        printer=lines.append,
    )
    assert lines == []


def test_the_bundled_preset_is_a_student_with_a_mixed_teacher():
    from nameorigin.training import resolve_settings

    settings = resolve_settings("bundled")  # a mixed ensemble: the distilled network and the n-gram member
    network, ngram = settings.members
    assert settings.model.name == "mixed" and settings.teacher is None
    assert network.model.name == "gru-attention" and network.train.teacher_folds >= 2
    assert network.teacher.members and network.teacher.model.name == "mixed"
    assert 0 < network.train.distill_weight < 1
    assert ngram.model.name == "ngram-lr" and ngram.teacher is None and ngram.model.compact and ngram.model.int8
    assert ngram.train.class_weight == 1.0 and ngram.model.vocab_limit
    assert network.model.compact  # held and stored at float16
    alone = resolve_settings("bundled-network")  # the network alone, as it shipped before (float32)
    assert replace(alone.model, compact=True) == network.model and alone.teacher.model.name == "mixed"
    assert resolve_settings("bundled", train={"distill_weight": 0}).members[0].train.distill_weight == 0


def test_the_ngram_fit_holds_blas_and_openmp_to_torchs_threads():
    """compare --threads 1 ran its baseline on every core (SciPy's BLAS, scikit-learn's OpenMP): the fit now
    holds every pool loaded to torch's thread count."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pytest.importorskip("sklearn.linear_model")
    import torch

    from nameorigin.training import _blas_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with _blas_threads():
            pools = threadpoolctl.threadpool_info()
        assert pools and all(p["num_threads"] == 1 for p in pools)
    finally:
        torch.set_num_threads(before)
