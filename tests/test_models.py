"""Every model: a padded batch gives what the seeds' one-character-at-a-time code gives on each name alone."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nameorigin import reference as seeds  # the seeds' code, reimplemented once for tests and benchmarks
from nameorigin.data import encode_names
from nameorigin.models import REGISTRY, ModelConfig, build_model

NAMES = ["Abl", "Schmidhuber", "Zhou", "O'Neal", "Ng", "X", "Nakamura", "Hinton"]
N_CLASSES = 5
NOT_FROM_THE_SEEDS = {"transformer", "cnn", "ngram-lr"}
VARIANTS = [(name, 1, False) for name in REGISTRY if name not in NOT_FROM_THE_SEEDS] + [
    (name, layers, bi)
    for name in ("rnn", "gru", "gru-attention", "lstm")
    for layers, bi in [(2, False), (1, True), (2, True)]
]


def seed_cell(module: nn.RNNBase) -> nn.Module:
    """A one-step cell holding a single-layer torch module's weights."""
    kind = {nn.GRU: nn.GRUCell, nn.LSTM: nn.LSTMCell, nn.RNN: nn.RNNCell}[type(module)]
    cell = kind(module.input_size, module.hidden_size)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in module.state_dict().items()})
    return cell


def run_cell(cell, xs):
    """One character at a time over a list of (1, E) inputs; returns every hidden state."""
    h, c, out = torch.zeros(1, cell.hidden_size), torch.zeros(1, cell.hidden_size), []
    for x in xs:
        if isinstance(cell, nn.LSTMCell):
            h, c = cell(x, (h, c))
        else:
            h = cell(x, h)
        out.append(h)
    return out


def reference(model, line):
    """The seeds' per-name computation, with the model's weights."""
    xs = list(seeds.line_to_tensor(line))  # T x (1, 57)
    if model.config.name == "tutorial-rnn":
        hidden = torch.zeros(1, model.config.hidden)
        for x in xs:  # seed 002's RNN.forward, verbatim arithmetic
            combined = torch.cat((x, hidden), 1)
            hidden = model.i2h(combined)
            output = F.log_softmax(model.i2o(combined), dim=1)
        return output, None
    enc = model.encoder
    for i in range(len(enc.fwd)):
        fwd = run_cell(seed_cell(enc.fwd[i]), xs)
        if enc.directions == 2:
            bwd = run_cell(seed_cell(enc.bwd[i]), xs[::-1])[::-1]
            xs = [torch.cat([f, b], 1) for f, b in zip(fwd, bwd, strict=False)]
        else:
            xs = fwd
        last_fwd, first_bwd = fwd[-1], (bwd[0] if enc.directions == 2 else None)
    if model.has_attention:
        states = torch.cat(xs, 0)  # (T, H)
        alpha = torch.softmax(model.att(states).squeeze(1), 0)
        c = (alpha.unsqueeze(1) * states).sum(0, keepdim=True)
        return F.log_softmax(model.h2o(c), dim=1), alpha
    final = last_fwd if first_bwd is None else torch.cat([last_fwd, first_bwd], 1)
    return F.log_softmax(model.h2o(final), dim=1), None


@pytest.mark.parametrize("name, layers, bidirectional", VARIANTS)
def test_padded_batch_matches_one_name_at_a_time(name, layers, bidirectional):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, hidden=16, layers=layers, bidirectional=bidirectional), N_CLASSES)
    model.eval()
    tokens, lengths = encode_names(NAMES, extra=3)  # extra padding on top of the ragged lengths
    with torch.no_grad():
        log_probs, attention = model(tokens, lengths)
        assert log_probs.shape == (len(NAMES), N_CLASSES)
        for i, line in enumerate(NAMES):
            ref, ref_alpha = reference(model, line)
            torch.testing.assert_close(log_probs[i], ref[0], atol=1e-5, rtol=0)
            if model.has_attention:
                torch.testing.assert_close(attention[i, : len(line)], ref_alpha, atol=1e-5, rtol=0)


def make(name: str, **sizes) -> torch.nn.Module:
    """A fresh model of ``name`` (an ngram-lr fitted on the test names, so that it has a vocabulary)."""
    torch.manual_seed(0)
    if name == "ngram-lr":
        from nameorigin.data import Encoded
        from nameorigin.training import fit_ngram_lr

        tokens, lengths = encode_names(NAMES)
        return fit_ngram_lr(Encoded(tokens, lengths, torch.arange(len(NAMES)) % N_CLASSES), N_CLASSES)
    return build_model(ModelConfig(name=name, **{"hidden": 16, **sizes}), N_CLASSES)


ALL_SHAPES = [(name, {}) for name in REGISTRY] + [
    ("transformer", {"layers": 2, "heads": 2}),
    ("transformer", {"dropout": 0.2}),
    ("cnn", {"embed": 8}),
    ("gru-attention", {"bidirectional": True, "layers": 2}),
]


@pytest.mark.parametrize("name, sizes", ALL_SHAPES)
def test_a_name_alone_equals_the_same_name_in_a_padded_batch(name, sizes):
    model = make(name, **sizes).eval()
    tokens, lengths = encode_names(NAMES, extra=4)
    for context in (torch.no_grad, torch.inference_mode):  # inference mode: torch's fast paths, if any
        with context():
            log_probs, attention = model(tokens, lengths)
            for i, line in enumerate(NAMES):
                alone, alone_attention = model(*encode_names([line]))
                torch.testing.assert_close(log_probs[i], alone[0], atol=1e-5, rtol=0)
                if model.has_attention:
                    torch.testing.assert_close(attention[i, : len(line)], alone_attention[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "name, layers, bidirectional",
    [v for v in VARIANTS if v[0] == "gru-attention"] + [("transformer", 1, False), ("transformer", 2, False)],
)
def test_attention_is_zero_on_padding_and_sums_to_one(name, layers, bidirectional):
    model = build_model(ModelConfig(name=name, hidden=8, layers=layers, bidirectional=bidirectional), N_CLASSES)
    tokens, lengths = encode_names(NAMES, extra=2)
    _, attention = model(tokens, lengths)
    assert attention.shape == tokens.shape
    real = torch.arange(tokens.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
    assert torch.all(attention[~real] == 0)
    torch.testing.assert_close(attention.sum(1), torch.ones(len(NAMES)))


@pytest.mark.parametrize("name", [n for n in REGISTRY if not REGISTRY[n].has_attention])
def test_models_without_attention_return_none(name):
    tokens, lengths = encode_names(NAMES)
    assert make(name)(tokens, lengths)[1] is None


def test_transformer_padding_has_no_say_through_self_attention():
    """Changing what sits in the padding (beyond each name's length) changes nothing."""
    model = make("transformer", layers=2).eval()
    tokens, lengths = encode_names(NAMES, extra=3)
    noisy = tokens.clone()
    pad = ~(torch.arange(tokens.size(1)).unsqueeze(0) < lengths.unsqueeze(1))
    noisy[pad] = 5
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, lengths)[0], model(noisy, lengths)[0], atol=1e-5, rtol=0)


def test_transformer_hidden_must_be_a_multiple_of_heads():
    with pytest.raises(ValueError, match="multiple of heads 4 and of 4"):
        build_model(ModelConfig(name="transformer", hidden=10, heads=4), N_CLASSES)


def test_cnn_reads_names_shorter_than_its_widest_window_and_pools_over_the_name_only():
    model = make("cnn").eval()
    tokens, lengths = encode_names(["X", "Ng", "Schmidhuber"], extra=2)
    with torch.no_grad():
        log_probs, _ = model(tokens, lengths)
    assert torch.isfinite(log_probs).all()
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(3))


def test_ngram_lr_features_are_scikit_learns_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    model = make("ngram-lr")
    grams = lambda s: [s[i : i + n] for n in range(1, 6) for i in range(len(s) - n + 1)]  # noqa: E731
    vectorizer = TfidfVectorizer(analyzer=grams, sublinear_tf=True)
    expected = vectorizer.fit_transform(NAMES).toarray()
    assert model.vocab.numel() == expected.shape[1]
    rows, cols, values = model.features(*encode_names(NAMES, extra=2))
    ours = torch.zeros(len(NAMES), model.vocab.numel()).index_put_((rows, cols), values)
    # the same matrix up to the order of the columns: compare sorted rows of values
    torch.testing.assert_close(ours.sort(1).values, torch.tensor(expected, dtype=torch.float32).sort(1).values)
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(len(NAMES)))


def test_ngram_lr_predicts_its_training_names():
    model = make("ngram-lr")
    log_probs, _ = model(*encode_names(NAMES))
    assert log_probs.argmax(1).tolist() == (torch.arange(len(NAMES)) % N_CLASSES).tolist()
    unseen, _ = model(*encode_names(["Qqq"]))  # no known n-gram: the bias alone
    torch.testing.assert_close(unseen[0], torch.log_softmax(model.bias.detach(), 0))


def test_ngram_lr_with_edges_counts_scikit_learns_char_wb_ngrams():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from nameorigin.data import Encoded
    from nameorigin.training import fit_ngram_lr

    pytest.importorskip("sklearn")
    tokens, lengths = encode_names(NAMES)
    config = ModelConfig(name="ngram-lr", ngram=3, edges=True)
    model = fit_ngram_lr(Encoded(tokens, lengths, torch.arange(len(NAMES)) % N_CLASSES), N_CLASSES, config=config)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), lowercase=False, sublinear_tf=True)
    expected = vectorizer.fit_transform(NAMES).toarray()  # one word each: " name " padded as ours is marked
    assert model.config.edges and model.config.ngram == 3
    assert model.vocab.numel() == expected.shape[1]
    rows, cols, values = model.features(*encode_names(NAMES, extra=2))
    ours = torch.zeros(len(NAMES), model.vocab.numel()).index_put_((rows, cols), values)
    torch.testing.assert_close(ours.sort(1).values, torch.tensor(expected, dtype=torch.float32).sort(1).values)
    plain = make("ngram-lr")
    assert not plain.config.edges and plain.config.ngram == 5  # what older checkpoints were fitted with


def test_ngram_lr_vocab_limit_keeps_the_ngrams_of_the_most_names_sorted():
    from nameorigin.data import Encoded
    from nameorigin.models import NgramLR
    from nameorigin.training import fit_ngram_lr

    pytest.importorskip("sklearn")
    names = ["Abe", "Abel", "Abbot", "Cabe", "Zed"]
    tokens, lengths = encode_names(names)
    labels = torch.tensor([0, 0, 1, 1, 2])
    full = fit_ngram_lr(Encoded(tokens, lengths, labels), 3)
    small = fit_ngram_lr(Encoded(tokens, lengths, labels), 3, config=ModelConfig(name="ngram-lr", vocab_limit=4))
    assert small.vocab.numel() == 4 and small.config.vocab == 4 and full.vocab.numel() > 4
    assert torch.equal(small.vocab, small.vocab.sort().values)
    codes, valid = NgramLR.ngram_codes(*encode_names(["b"]))
    b = int(codes[valid][0])
    assert b in small.vocab.tolist()  # "b" is in four of the five names: among the four most frequent
    log_probs, _ = small(tokens, lengths)
    assert torch.isfinite(log_probs).all()


@pytest.mark.parametrize("ngram,edges,limit", [(5, True, 30), (5, False, 0), (2, True, 0), (4, True, 7)])
def test_ngram_lr_finds_each_ngram_as_a_plain_binary_search_of_its_vocabulary_does(ngram, edges, limit):
    """The dense table of short n-grams and the binary search of the longer ones give each code the column
    ``searchsorted`` finds (-1 where the vocabulary lacks it), also after the vocabulary changes."""
    from nameorigin.data import Encoded
    from nameorigin.models import NgramLR
    from nameorigin.training import fit_ngram_lr

    pytest.importorskip("sklearn")
    tokens, lengths = encode_names(NAMES)
    config = ModelConfig(name="ngram-lr", ngram=ngram, edges=edges, vocab_limit=limit)
    model = fit_ngram_lr(Encoded(tokens, lengths, torch.arange(len(NAMES)) % N_CLASSES), N_CLASSES, config=config)
    others = encode_names(["Zzyzx", "A", "Abbe", "Qu", *NAMES], extra=3)
    for second in range(2):
        codes, valid = NgramLR.ngram_codes(*others, max_n=ngram, edges=edges)
        width = NgramLR.leading_width(others[0].size(1), min(3, ngram), edges=edges)
        assert codes.size(1) == NgramLR.leading_width(others[0].size(1), ngram, edges=edges)  # every column
        at = torch.searchsorted(model.vocab, codes).clamp(max=model.vocab.numel() - 1)
        expected = torch.where(model.vocab[at] == codes, at, -1)
        assert torch.equal(model.columns(codes, width), expected)
        assert second or ((expected[valid] >= 0).any() and (expected[valid] < 0).any())
        with torch.no_grad():  # another vocabulary (sorted, distinct codes): the table follows it
            model.vocab.mul_(2)
    with torch.inference_mode():  # a vocabulary made under inference mode (no version counter) still answers
        model.vocab = model.vocab.clone() // 2
    codes, _ = NgramLR.ngram_codes(*others, max_n=ngram, edges=edges)
    at = torch.searchsorted(model.vocab, codes).clamp(max=model.vocab.numel() - 1)
    assert torch.equal(model.columns(codes, width), torch.where(model.vocab[at] == codes, at, -1))


def test_rnn_and_gru_start_from_the_seeds_weights_for_the_same_seed():
    torch.manual_seed(7)
    seed_rnn = seeds.RNNClassifier(57, 32, 18)
    torch.manual_seed(7)
    ours = build_model(ModelConfig(name="rnn", hidden=32), 18)
    rnn = ours.encoder.fwd[0]
    torch.testing.assert_close(torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], 1), seed_rnn.i2h.weight)
    torch.testing.assert_close(rnn.bias_ih_l0 + rnn.bias_hh_l0, seed_rnn.i2h.bias)
    torch.testing.assert_close(ours.h2o.weight, seed_rnn.h2o.weight)
    assert not rnn.bias_hh_l0.requires_grad  # one bias per step, as the seed has

    torch.manual_seed(7)
    seed_gru = seeds.GRUClassifier(57, 32, 18)
    torch.manual_seed(7)
    ours = build_model(ModelConfig(name="gru", hidden=32), 18)
    torch.testing.assert_close(ours.encoder.fwd[0].weight_hh_l0, seed_gru.gru.weight_hh_l0)
    torch.testing.assert_close(ours.h2o.weight, seed_gru.h2o.weight)


def test_unknown_model_name_is_a_clear_error():
    from nameorigin.models import UnknownModel

    with pytest.raises(UnknownModel, match="unknown model 'perceiver'"):
        build_model(ModelConfig(name="perceiver"), 3)


@pytest.mark.parametrize("name", ["gru", "gru-attention"])
def test_ensemble_averages_its_members_probabilities(name):
    from nameorigin.models import Ensemble

    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, hidden=8, members=3), N_CLASSES).eval()
    assert isinstance(model, Ensemble) and len(model.members) == 3
    assert model.has_attention == (name == "gru-attention")
    tokens, lengths = encode_names(NAMES, extra=2)
    with torch.no_grad():
        log_probs, attention = model(tokens, lengths)
        outputs = [m(tokens, lengths) for m in model.members]
    probs = torch.stack([lp.exp() for lp, _ in outputs]).mean(0)
    torch.testing.assert_close(log_probs.exp(), probs)
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(len(NAMES)))
    assert not torch.equal(outputs[0][0], outputs[1][0])  # members start from different weights
    if model.has_attention:
        torch.testing.assert_close(attention, torch.stack([a for _, a in outputs]).mean(0))
        torch.testing.assert_close(attention.sum(1), torch.ones(len(NAMES)))
    else:
        assert attention is None


def test_members_below_one_is_a_clear_error():
    with pytest.raises(ValueError, match="members 0"):
        build_model(ModelConfig(members=0), N_CLASSES)


def test_mixed_ensemble_weights_its_members_and_round_trips_through_a_checkpoint(tmp_path):
    from nameorigin import checkpoint
    from nameorigin.training import mixed_ensemble

    members = [make("gru-attention"), make("transformer"), make("cnn"), make("ngram-lr")]
    model = mixed_ensemble(members, None, N_CLASSES)
    assert model.config.name == "mixed" and [c["name"] for c in model.config.mix] == [m.config.name for m in members]
    model.weights.copy_(torch.tensor([0.4, 0.3, 0.2, 0.1]))
    model.temperatures.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]))
    tokens, lengths = encode_names(NAMES, extra=2)
    with torch.no_grad():
        log_probs, attention = model(tokens, lengths)
        outputs = [m.eval()(tokens, lengths) for m in members]
    probs = sum(
        w * torch.softmax(lp / t, 1)
        for w, t, (lp, _) in zip([0.4, 0.3, 0.2, 0.1], [1.0, 2.0, 0.5, 1.0], outputs, strict=True)
    )
    torch.testing.assert_close(log_probs.exp(), probs)
    torch.testing.assert_close(attention, (0.4 * outputs[0][1] + 0.3 * outputs[1][1]) / 0.7)
    path = checkpoint.save(tmp_path / "mixed.safetensors", model, [f"L{i}" for i in range(N_CLASSES)])
    loaded = checkpoint.load(path).model
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, lengths)[0], log_probs)
    torch.testing.assert_close(loaded.weights, torch.tensor([0.4, 0.3, 0.2, 0.1]))
    torch.testing.assert_close(loaded.temperatures, torch.tensor([1.0, 2.0, 0.5, 1.0]))


def test_mixture_weights_go_to_the_member_that_is_right():
    from nameorigin.training import fit_mixture_weights

    target = torch.arange(200) % N_CLASSES
    good = torch.log_softmax(torch.nn.functional.one_hot(target, N_CLASSES).float() * 4, 1)
    noise = torch.log_softmax(torch.randn(200, N_CLASSES, generator=torch.Generator().manual_seed(0)), 1)
    weights, temperatures = fit_mixture_weights([noise, good], target)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert weights[1] > 0.95
    assert temperatures[1] < 0.5  # a member always right, but unsure, is sharpened
    half, _ = fit_mixture_weights([good, good], target)  # equal members: nothing to choose, stays even
    torch.testing.assert_close(half, torch.tensor([0.5, 0.5]))


def test_mixture_temperatures_let_an_under_confident_but_better_member_win():
    from nameorigin.training import fit_mixture_weights

    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, N_CLASSES, (400,), generator=gen)
    right = torch.rand(400, generator=gen) < 0.9  # member A: right 90 % of the time, but timid
    shuffled = torch.where(right, target, (target + 1) % N_CLASSES)
    timid = torch.log_softmax(torch.nn.functional.one_hot(shuffled, N_CLASSES).float() * 0.5, 1)
    right_b = torch.rand(400, generator=gen) < 0.6  # member B: right 60 % of the time, sure of itself
    bold = torch.log_softmax(
        torch.nn.functional.one_hot(torch.where(right_b, target, (target + 2) % N_CLASSES), N_CLASSES).float() * 6, 1
    )
    weights, temperatures = fit_mixture_weights([timid, bold], target)
    assert weights[0] > weights[1] and temperatures[0] < 1


RAGGED = [*NAMES, "Aa", "Zz'x-y", "Lopez-Garcia", "B"]  # lengths 1 to 12, sorted in no order


@pytest.mark.parametrize(
    "name, layers, bidirectional, embed",
    [(n, la, bi, e) for n in ("gru", "gru-attention") for la in (1, 2) for bi in (False, True) for e in (0, 8)],
)
def test_gru_inference_gives_torchs_gru_numbers_bit_for_bit(name, layers, bidirectional, embed, monkeypatch):
    from nameorigin import models

    torch.manual_seed(0)
    config = ModelConfig(name=name, hidden=16, layers=layers, bidirectional=bidirectional, embed=embed)
    model = build_model(config, N_CLASSES).eval()
    tokens, lengths = encode_names(RAGGED, extra=3)
    calls = []
    fast = models.gru_inference
    monkeypatch.setattr(models, "gru_inference", lambda *a: calls.append(1) or fast(*a))
    with torch.inference_mode():
        states, final = model.encoder(model.input(tokens), lengths)  # torch's GRU
        fast_states, fast_final = model.encoder.encode(model.input, tokens, lengths)
        assert calls, "the inference path was not taken"
        assert torch.equal(states, fast_states) and torch.equal(final, fast_final)
        log_probs, attention = model(tokens, lengths)
    calls.clear()
    with torch.enable_grad():  # training: torch's GRU, with its gradients
        slow_log_probs, slow_attention = model(tokens, lengths)
        assert not calls and slow_log_probs.requires_grad
    assert torch.equal(log_probs, slow_log_probs.detach())
    if model.has_attention:
        assert torch.equal(attention, slow_attention.detach())


def test_gru_inference_is_not_used_for_int8_or_training(monkeypatch):
    from nameorigin import models

    monkeypatch.setattr(models, "gru_inference", lambda *a: pytest.fail("gru_inference was used"))
    model = build_model(ModelConfig(name="gru", hidden=16), N_CLASSES)
    tokens, lengths = encode_names(NAMES)
    model.train()
    with torch.no_grad():
        model(tokens, lengths)  # training mode, even without gradients
    with torch.inference_mode():
        models.with_precision(model.eval(), "int8")(tokens, lengths)
