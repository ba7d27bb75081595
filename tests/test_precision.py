"""--precision fp32/bf16/int8 on tiny trained models of every kind: probabilities stay probabilities, and the
ranking stays fp32's wherever fp32 itself is not near a tie."""

import pytest
import torch

from conftest import make_names, train_tiny
from nameorigin.cli import main
from nameorigin.models import PrecisionError, int8_modules, with_precision
from nameorigin.predict import Predictor
from nameorigin.text import fold

# bf16 keeps 8 bits of mantissa (a relative error of about 0.4 % a step, compounding over a name's characters
# through the recurrence); int8 weights keep about 1/127 of each tensor's range. The models train without a
# validation split, so their temperature is 1: a temperature fitted on a few dozen tiny validation names can be
# as low as 0.06 and would multiply these log-probability errors some 16 times (a real model's is near 1).
# The bound is also the top-1 margin below which a swap of the first two languages is a rounding tie, not an error.
TOLERANCE = {"bf16": 0.03, "int8": 0.03}

MODELS = {
    "tutorial-rnn": ("--hidden", "16"),
    "rnn": ("--hidden", "16"),
    "gru": ("--hidden", "16"),
    "lstm": ("--hidden", "16", "--bidirectional", "--embed", "8"),
    "gru-attention": ("--hidden", "16", "--bidirectional"),
    "gru-ensemble": ("--hidden", "16", "--members", "2"),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for key, extra in MODELS.items():
        root = tmp_path_factory.mktemp(key)
        _, out[key] = train_tiny(
            root, key.replace("-ensemble", ""), "--epochs", "10", "--lr", "0.01", "--split", "1,0,0", *extra
        )
    return out


FOLDED = [fold(n) for names in make_names(15, seed=7).values() for n in names]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("key", list(MODELS))
def test_each_precision_agrees_with_fp32(models, key, precision):
    reference, _ = Predictor.load(models[key]).probabilities(FOLDED)
    assert Predictor.load(models[key]).temperature == 1.0
    if key == "tutorial-rnn" and precision == "int8":  # refused, with the reason
        with pytest.raises(PrecisionError, match="does not apply to tutorial-rnn"):
            Predictor.load(models[key], precision=precision)
        return
    try:
        probs, _ = Predictor.load(models[key], precision=precision).probabilities(FOLDED)
    except PrecisionError as e:
        pytest.skip(str(e))  # a CPU without bf16 kernels
    assert probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(len(FOLDED)), atol=1e-5)
    assert (probs - reference).abs().max() < TOLERANCE[precision]
    top2 = reference.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > TOLERANCE[precision]
    assert clear.float().mean() > 0.25  # the check below has names to bite on
    assert torch.equal(probs.argmax(1)[clear], reference.argmax(1)[clear])


def test_int8_quantizes_the_recurrent_and_linear_layers_it_can(models):
    gru = Predictor.load(models["gru"]).model
    assert int8_modules(gru) == {"encoder.fwd.0", "h2o"}
    rnn = Predictor.load(models["rnn"]).model
    assert int8_modules(rnn) == {"h2o"}  # quantize_dynamic has no int8 nn.RNN: the recurrence stays fp32
    quantized = Predictor.load(models["gru"], precision="int8").model
    assert "quantized" in type(quantized.encoder.fwd[0]).__module__ and "quantized" in type(quantized.h2o).__module__


def test_unknown_or_unavailable_precision_is_a_clear_error(models, monkeypatch, capsys):
    model = Predictor.load(models["gru"]).model
    with pytest.raises(PrecisionError, match="fp16"):
        with_precision(model, "fp16")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert main(["predict", "--model", str(models["gru"]), "--precision", "bf16", "Kalov"]) == 2
    assert "bf16" in capsys.readouterr().err


def test_cli_predict_and_evaluate_with_int8(models, capsys, tmp_path):
    assert main(["predict", "--model", str(models["gru"]), "--precision", "int8", "--json", "Kalov"]) == 0
    assert '"predictions"' in capsys.readouterr().out
    folder = tmp_path / "names"
    folder.mkdir()
    for lang, names in make_names(10, seed=3).items():
        (folder / f"{lang}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(models["gru"]), "--data", str(folder), "--precision", "int8"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["predict", "--precision", "fp8", "Kalov"])
    assert e.value.code == 2
