import json
import struct
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from nameorigin import checkpoint
from nameorigin.checkpoint import CheckpointError
from nameorigin.data import encode_names
from nameorigin.models import ModelConfig, build_model

LABELS = ["Alpha", "Beta", "Gamma"]


@pytest.fixture
def saved(tmp_path):
    model = build_model(ModelConfig(name="gru-attention", hidden=8), len(LABELS))
    path = checkpoint.save(tmp_path / "m.safetensors", model, LABELS, {"metrics": {"test": {"accuracy": 0.5}}})
    return model, path


def test_round_trip_gives_the_same_outputs(saved):
    model, path = saved
    ck = checkpoint.load(path)
    assert ck.labels == LABELS and ck.config == model.config and ck.meta["metrics"]["test"]["accuracy"] == 0.5
    tokens, lengths = encode_names(["Abel", "Zhou"])
    model.eval()
    torch.testing.assert_close(ck.model(tokens, lengths)[0], model(tokens, lengths)[0])
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_truncated_file(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match=r"m.safetensors"):
        checkpoint.load(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"junk.safetensors: not a readable .safetensors file"):
        checkpoint.load(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"x": "y"})
    with pytest.raises(CheckpointError, match="not a nameorigin checkpoint"):
        checkpoint.load(path)


def _rewrite_metadata(path, edit, *, rehash=True, raw_text=None):
    """Edit the document of a saved checkpoint; ``rehash``: recompute its SHA-256 as anyone can (a tamperer, or
    a tool that writes nonsense carefully), so that what is checked behind the hash shows."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    doc = json.loads(header["__metadata__"]["nameorigin"])
    text = raw_text if raw_text is not None else json.dumps(edit(doc))
    header["__metadata__"]["nameorigin"] = text
    if rehash:
        header["__metadata__"][checkpoint.DIGEST_KEY] = checkpoint.full_digest(checkpoint.load_file(str(path)), text)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def _write_v1(path, model, labels, *, digest=True, **meta):
    """A checkpoint as nameorigin wrote them before format 2: its SHA-256 (or none) over the tensors only."""
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    doc = {
        "format": checkpoint.FORMAT,
        "version": 1,
        "model": model.config.to_dict(),
        "alphabet": checkpoint.ALPHABET,
        "labels": labels,
        **meta,
    }
    if digest:
        doc["weights_sha256"] = checkpoint.tensors_digest(tensors)
    save_file(tensors, str(path), metadata={"nameorigin": json.dumps(doc)})
    return path


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: {**d, "labels": ["Alphx", *d["labels"][1:]]},  # one flipped byte of a label
        lambda d: {**d, "labels": [d["labels"][1], d["labels"][0], *d["labels"][2:]]},  # two labels swapped
        lambda d: {**d, "temperature": 2.0},
        lambda d: {**d, "metrics": {}},
    ],
)
def test_the_hash_covers_the_whole_metadata_document(saved, edit):
    _, path = saved
    _rewrite_metadata(path, edit, rehash=False)
    with pytest.raises(CheckpointError, match="damaged: its weights or metadata do not match"):
        checkpoint.load(path)


def test_an_older_checkpoint_loads_with_a_warning_that_it_cannot_be_fully_verified(tmp_path, caplog):
    model = build_model(ModelConfig(name="gru", hidden=8), 3)
    for digest, says in ((True, "covers only the weights"), (False, "covers nothing")):
        path = _write_v1(tmp_path / f"v1-{digest}.safetensors", model, LABELS, digest=digest, temperature=1.5)
        caplog.clear()
        with caplog.at_level("WARNING", logger="nameorigin"):
            ck = checkpoint.load(path)
        assert ck.labels == LABELS and ck.meta["temperature"] == 1.5
        assert "cannot be verified" in caplog.text and says in caplog.text
    _rewrite_metadata(path, lambda d: {**d, "weights_sha256": "0" * 64}, rehash=False)
    with pytest.raises(CheckpointError, match="damaged"):  # its own hash is still checked
        checkpoint.load(path)
    again = checkpoint.save(tmp_path / "again.safetensors", ck.model, ck.labels, ck.meta)  # saved again: format 2
    caplog.clear()
    with caplog.at_level("WARNING", logger="nameorigin"):
        assert checkpoint.read_meta(again)["version"] == checkpoint.VERSION and checkpoint.load(again)
    assert not caplog.text


def test_the_bundled_model_is_format_2():
    from nameorigin.predict import default_model_path

    assert checkpoint.read_meta(default_model_path())["version"] == checkpoint.VERSION == 2


def test_a_digest_the_user_knows_is_insisted_on(saved, tmp_path):
    import hashlib

    _, path = saved
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint.load(path, sha256=digest.upper()).labels == LABELS
    with pytest.raises(CheckpointError, match=r"its SHA-256 is .*not the 0{64} asked for"):
        checkpoint.load(path, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="64 hexadecimal digits"):
        checkpoint.load(path, sha256="abc")
    # the recorded hash recomputed: only the digest sees it
    _rewrite_metadata(path, lambda d: {**d, "temperature": 9.0})
    with pytest.raises(CheckpointError, match="asked for"):
        checkpoint.load(path, sha256=digest)
    from nameorigin.cli import main

    assert main(["predict", "--model", str(path), "--model-sha256", digest, "Kalov"]) == 2
    assert (
        main(
            ["predict", "--model", str(path), "--model-sha256", hashlib.sha256(path.read_bytes()).hexdigest(), "Kalov"]
        )
        == 0
    )


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda d: {**d, "temperature": -1}, "temperature is -1"),
        (lambda d: {**d, "temperature": "hot"}, "temperature is 'hot'"),
        (lambda d: {**d, "labels": ["Alpha", "Alpha", "Gamma"]}, "distinct"),
        (lambda d: {**d, "labels": "Alpha"}, "labels"),
        (lambda d: {**d, "model": {**d["model"], "hidden": "8"}}, "model.hidden is '8'"),
        (lambda d: {**d, "model": {**d["model"], "dropout": 7}}, "model.dropout"),
        (lambda d: {**d, "model": {**d["model"], "bidirectional": "yes"}}, "bidirectional"),
        (lambda d: {**d, "model": [1]}, "not an object of model settings"),
        (lambda d: {**d, "training": [1]}, "training is list"),
        (lambda d: {**d, "trust": {"version": 1, "temperature": -2}}, "trust layer is invalid"),
        (lambda d: {**d, "trust": {"version": 1, "min_confidence": 3}}, "min_confidence is 3"),
        (lambda d: {**d, "trust": {"version": 1, "train_prior": [0.5, 0.5]}}, "train_prior"),
        (
            lambda d: {**d, "trust": {"version": 1, "conformal": {"method": "lac", "scores": [0.1], "lambda": None}}},
            "conformal.lambda",
        ),
        (lambda d: {**d, "trust": "on"}, "trust is str"),
        (lambda d: {**d, "extra": _deep(100)}, "nests deeper"),
    ],
)
def test_every_metadata_field_is_validated(saved, edit, says):
    _, path = saved
    _rewrite_metadata(path, edit)
    with pytest.raises(CheckpointError, match=r"m.safetensors") as info:
        checkpoint.load(path)
    assert says in str(info.value)


def _deep(n):
    value = []
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"format": "nameorigin-checkpoint", "temperature": NaN}', "NaN is not a number JSON allows"),
        ('{"format": "nameorigin-checkpoint", "temperature": Infinity}', "Infinity"),
        ("[" * 100_000 + "]" * 100_000, "nests too deep"),
    ],
)
def test_non_finite_numbers_and_deep_nesting_are_refused_without_a_traceback(saved, text, says):
    _, path = saved
    _rewrite_metadata(path, None, raw_text=text)
    with pytest.raises(CheckpointError, match=says):
        checkpoint.load(path)
    from nameorigin.cli import main

    assert main(["predict", "--model", str(path), "Kalov"]) == 2


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda d: {**d, "model": {**d["model"], "hidden": 16384}}, "the settings make it"),
        (lambda d: {**d, "model": {**d["model"], "members": 1000}}, "1000 member(s)"),
        (lambda d: {**d, "model": {**d["model"], "layers": 200}}, "200 layer(s)"),
    ],
)
def test_declared_shapes_are_checked_before_anything_is_built(saved, edit, says, monkeypatch):
    _, path = saved
    _rewrite_metadata(path, edit)
    built = []
    real = checkpoint.build_model
    monkeypatch.setattr(
        checkpoint, "build_model", lambda config, n: built.append(str(torch.empty(0).device)) or real(config, n)
    )
    with pytest.raises(CheckpointError, match="weights do not match the model it describes") as info:
        checkpoint.load(path)
    assert says in str(info.value) and built in ([], ["meta"])  # only ever on the meta device, if at all


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p.mkdir(), "a directory"),
        (lambda p: __import__("os").mkfifo(p), "a FIFO"),
    ],
)
def test_a_special_file_as_model_says_what_it_is(tmp_path, make, says):
    path = tmp_path / "odd.safetensors"
    make(path)
    with pytest.raises(CheckpointError, match=f"odd.safetensors: {says}"):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match="a character device"):
        checkpoint.load("/dev/zero")


def test_tampered_model_settings(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "model": {**d["model"], "hidden": 16}})
    with pytest.raises(CheckpointError, match="weights do not match the model it describes"):
        checkpoint.load(path)


def test_tampered_labels(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "labels": [*LABELS, "Delta"]})
    with pytest.raises(CheckpointError, match="weights do not match"):
        checkpoint.load(path)


def test_unknown_model_in_checkpoint(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "model": {**d["model"], "name": "perceiver"}})
    with pytest.raises(CheckpointError, match="unknown model 'perceiver'"):
        checkpoint.load(path)


def test_other_version_and_alphabet(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "version": 99})
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoint.load(path)


def test_nan_weights(tmp_path):
    model = build_model(ModelConfig(name="gru", hidden=4), 2)
    with torch.no_grad():
        model.h2o.weight.fill_(float("nan"))
    path = checkpoint.save(tmp_path / "nan.safetensors", model, ["a", "b"])
    with pytest.raises(CheckpointError, match="NaN"):
        checkpoint.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "none.safetensors")


def test_failed_write_leaves_the_old_file_and_no_temporary(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", boom)
    with pytest.raises(OSError):
        checkpoint.save(path, model, LABELS)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(name=n, hidden=16, **extra)
        for n, extra in [
            ("tutorial-rnn", {}),
            ("rnn", {"bidirectional": True, "layers": 2}),
            ("gru", {"embed": 8}),
            ("gru-attention", {"bidirectional": True}),
            ("lstm", {}),
            ("transformer", {"heads": 2, "layers": 2}),
            ("cnn", {}),
            ("ngram-lr", {"vocab": 7}),
            ("gru", {"members": 3}),
            ("mixed", {"mix": [ModelConfig(name="gru").to_dict(), ModelConfig(name="cnn", hidden=8).to_dict()]}),
        ]
    ],
    ids=lambda c: c.name,
)
def test_the_shape_check_finds_the_shapes_a_real_build_has(config):
    """The shape check builds on the meta device with initialisation skipped: the shapes must be a real build's."""
    with torch.device("meta"), checkpoint._NoInitOnMeta():
        meta = {k: tuple(v.shape) for k, v in build_model(config, 5).state_dict().items()}
    real = build_model(config, 5).state_dict()
    assert meta == {k: tuple(v.shape) for k, v in real.items()} and meta


def test_a_compact_ngram_member_is_stored_at_half_size_and_loads_exactly(tmp_path):
    pytest.importorskip("sklearn")
    from nameorigin.data import Encoded
    from nameorigin.training import fit_ngram_lr, mixed_ensemble

    names = ["Abe", "Abel", "Abbot", "Cabe", "Zed", "Zedd", "Nakamura", "Ng"]
    tokens, lengths = encode_names(names)
    labels = torch.arange(len(names)) % 3
    config = ModelConfig(name="ngram-lr", edges=True)
    plain = fit_ngram_lr(Encoded(tokens, lengths, labels), 3, config=config)
    compact = fit_ngram_lr(Encoded(tokens, lengths, labels), 3, config=replace(config, compact=True))
    torch.testing.assert_close(compact.weight, plain.weight, atol=1e-2, rtol=1e-3)  # float16 rounding only
    gru = build_model(ModelConfig(name="gru", hidden=4), 3)
    for model in (compact, mixed_ensemble([gru, compact], None, 3)):  # alone, and as a mixed member
        path = checkpoint.save(tmp_path / "m.safetensors", model, ["A", "B", "C"])
        loaded = checkpoint.load(path).model
        with torch.no_grad():
            torch.testing.assert_close(loaded(tokens, lengths)[0], model(tokens, lengths)[0], atol=0, rtol=0)
    plain_path = checkpoint.save(tmp_path / "plain.safetensors", plain, ["A", "B", "C"])
    compact_path = checkpoint.save(tmp_path / "compact.safetensors", compact, ["A", "B", "C"])
    assert compact_path.stat().st_size < 0.75 * plain_path.stat().st_size


def test_an_int8_ngram_member_and_a_compact_network_are_stored_small_and_load_exactly(tmp_path):
    pytest.importorskip("sklearn")
    from nameorigin.data import Encoded
    from nameorigin.models import hold_compact
    from nameorigin.training import fit_ngram_lr, mixed_ensemble

    names = ["Abe", "Abel", "Abbot", "Cabe", "Zed", "Zedd", "Nakamura", "Ng"] * 4
    tokens, lengths = encode_names(names)
    labels = torch.arange(len(names)) % 3
    config = ModelConfig(name="ngram-lr", edges=True, compact=True)
    half = fit_ngram_lr(Encoded(tokens, lengths, labels), 3, config=config)
    int8 = fit_ngram_lr(Encoded(tokens, lengths, labels), 3, config=replace(config, int8=True))
    step = int8.weight.abs().amax(0) / 127  # int8 rounding only: within half a step a language
    assert ((int8.weight - half.weight).abs() <= step * 0.51 + 1e-3).all()
    torch.manual_seed(0)
    gru = build_model(ModelConfig(name="gru", hidden=16), 3)
    plain_gru = checkpoint.save(tmp_path / "gru.safetensors", gru, ["A", "B", "C"]).stat().st_size
    small = hold_compact(build_model(ModelConfig(name="gru", hidden=16, compact=True), 3))
    small.load_state_dict(gru.state_dict())
    assert not torch.equal(gru.h2o.weight, gru.h2o.weight.half().float())  # not float16 values yet
    hold_compact(small)
    assert torch.equal(small.h2o.weight, gru.h2o.weight.half().float())
    for model in (int8, small, mixed_ensemble([small, int8], None, 3)):  # alone, and as mixed members
        path = checkpoint.save(tmp_path / "m.safetensors", model, ["A", "B", "C"])
        loaded = checkpoint.load(path).model
        with torch.no_grad():
            torch.testing.assert_close(loaded(tokens, lengths)[0], model(tokens, lengths)[0], atol=0, rtol=0)
    sizes = {}
    for key, model in (("half", half), ("int8", int8), ("gru", small)):
        sizes[key] = checkpoint.save(tmp_path / f"{key}.safetensors", model, ["A", "B", "C"]).stat().st_size
    assert sizes["int8"] < sizes["half"] and sizes["gru"] < 0.75 * plain_gru
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "int8.safetensors"))
    assert stored["weight"].dtype == torch.int8 and stored["weight_scale"].shape == (3,)


def test_an_int8_weight_without_its_scale_or_a_stray_scale_is_refused(tmp_path):
    from nameorigin.models import restored_tensors

    with pytest.raises(ValueError, match="without an int8"):
        restored_tensors({"weight_scale": torch.ones(3), "weight": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="without an int8"):
        restored_tensors({"x.weight_scale": torch.ones(3)})


def test_a_compact_ngram_member_whose_codes_outgrow_int32_is_refused_at_save(tmp_path):
    pytest.importorskip("sklearn")
    from nameorigin.data import Encoded
    from nameorigin.training import fit_ngram_lr

    tokens, lengths = encode_names(["Abcdefgh", "Zyxwvuts"])
    config = ModelConfig(name="ngram-lr", ngram=6, edges=True, compact=True)  # 59 ** 6 codes: past 2 ** 31
    model = fit_ngram_lr(Encoded(tokens, lengths, torch.tensor([0, 1])), 2, config=config)
    with pytest.raises(ValueError, match="do not fit in int32"):
        checkpoint.save(tmp_path / "m.safetensors", model, ["A", "B"])
    assert not (tmp_path / "m.safetensors").exists()  # nothing half-written
