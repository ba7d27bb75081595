"""Every model: a padded batch gives what the seeds' one-character-at-a-time code gives on each name alone."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seeds  # bench/seeds.py

from nameorigin.data import encode_names
from nameorigin.models import REGISTRY, ModelConfig, build_model

NAMES = ["Abl", "Schmidhuber", "Zhou", "O'Neal", "Ng", "X", "Nakamura", "Hinton"]
N_CLASSES = 5
VARIANTS = [(name, 1, False) for name in REGISTRY] + [
    (name, layers, bi) for name in ("rnn", "gru", "gru-attention", "lstm") for layers, bi in [(2, False), (1, True), (2, True)]
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
            xs = [torch.cat([f, b], 1) for f, b in zip(fwd, bwd)]
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


@pytest.mark.parametrize("name, layers, bidirectional", [v for v in VARIANTS if v[0] == "gru-attention"])
def test_attention_is_zero_on_padding_and_sums_to_one(name, layers, bidirectional):
    model = build_model(ModelConfig(name=name, hidden=8, layers=layers, bidirectional=bidirectional), N_CLASSES)
    tokens, lengths = encode_names(NAMES, extra=2)
    _, attention = model(tokens, lengths)
    assert attention.shape == tokens.shape
    real = torch.arange(tokens.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
    assert torch.all(attention[~real] == 0)
    torch.testing.assert_close(attention.sum(1), torch.ones(len(NAMES)))


@pytest.mark.parametrize("name", [n for n in REGISTRY if n != "gru-attention"])
def test_models_without_attention_return_none(name):
    tokens, lengths = encode_names(NAMES)
    assert build_model(ModelConfig(name=name, hidden=8), 3)(tokens, lengths)[1] is None


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
    with pytest.raises(UnknownModel, match="unknown model 'transformer'"):
        build_model(ModelConfig(name="transformer"), 3)


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
