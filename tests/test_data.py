import hashlib
import io
import random
import zipfile

import pytest
import torch

from nameorigin import data
from nameorigin.data import DataError


def test_read_folder_folds_and_labels(tiny_dir):
    pairs = data.read_labelled(tiny_dir)
    assert len(pairs) == 161  # 4 x 40 + one duplicate line
    assert data.languages(pairs) == ["Alpha", "Beta", "Delta", "Gamma"]
    assert len(data.dedupe(pairs)) == 160


def test_read_csv_with_and_without_header(tmp_path, tiny_csv):
    with_header = data.read_labelled(tiny_csv)
    assert len(with_header) == 80 and with_header[0][1] == "Alpha"
    bare = tmp_path / "bare.csv"
    bare.write_text("\n".join(tiny_csv.read_text().splitlines()[1:]) + "\n")
    assert data.read_labelled(bare) == with_header


def test_read_tsv_with_columns_in_any_order(tmp_path):
    path = tmp_path / "n.tsv"
    path.write_text("language\tsurname\nGerman\tMüller\nRussian\tШевченко\n", encoding="utf-8")
    assert data.read_labelled(path) == [("Muller", "German"), ("Shevchenko", "Russian")]


def test_missing_label_column_is_an_error(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("Abel\nSmith\n")
    with pytest.raises(DataError, match=r"n\.csv:1: expected a name and a label.*missing column"):
        data.read_labelled(path)
    path.write_text("name,age\nAbel,3\n")
    with pytest.raises(DataError, match="no label column"):
        data.read_labelled(path)


@pytest.mark.parametrize("content", ["", "\n\n", "name,label\n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=r"empty.csv: no labelled names"):
        data.read_labelled(path)


def test_missing_path_and_empty_folder_are_errors(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        data.read_labelled(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no <Language>.txt files"):
        data.read_labelled(tmp_path)


def test_binary_file_is_an_error(tmp_path):
    path = tmp_path / "blob.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage,\x80\x81\n")
    with pytest.raises(DataError, match=r"blob.csv: is not UTF-8"):
        data.read_labelled(path)


def test_split_is_leak_free_stratified_and_seeded(tiny_dir):
    pairs = [*data.read_labelled(tiny_dir), ("Kalov", "Beta")]  # a name under two languages
    parts = data.split(pairs, (0.5, 0.25, 0.25), seed=3)
    sides = [{n for n, _ in part} for part in (parts.train, parts.valid, parts.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sum(len(p) for p in (parts.train, parts.valid, parts.test)) == len(data.dedupe(pairs))
    for part, share in [(parts.train, 20), (parts.test, 10)]:
        per_lang = data.counts(part)
        assert all(abs(per_lang[lang] - share) <= 1 for lang in ("Beta", "Gamma", "Delta"))
    assert data.split(pairs, (0.5, 0.25, 0.25), seed=3) == parts
    assert data.split(pairs, (0.5, 0.25, 0.25), seed=4) != parts


@pytest.mark.parametrize("text", ["0.8,0.2", "0.5,0.5,0.5", "a,b,c", "0,0.5,0.5", "-0.1,0.6,0.5"])
def test_bad_split_fractions_are_errors(text):
    """The message starts with the parameter's name, which the error carries (the CLI says it as --split)."""
    with pytest.raises(DataError, match=f"^split {text!r}: ") as caught:
        data.parse_split(text)
    assert caught.value.param == "split" and caught.value.named("--split").startswith(f"--split {text!r}: ")


def test_prune_keeps_n_per_language_as_the_seed_does(tiny_dir):
    pairs = data.dedupe(data.read_labelled(tiny_dir))
    pruned = data.prune(pairs, 5, random.Random(0))
    assert data.counts(pruned) == {lang: 5 for lang in data.languages(pairs)}
    rng = random.Random(0)  # the seed: shuffle each language's lines, keep the first n
    expected = []
    for lang in data.languages(pairs):
        lines = [p for p in pairs if p[1] == lang]
        rng.shuffle(lines)
        expected += lines[:5]
    assert pruned == expected


def test_noise_batch_appends_only_punctuation_within_the_level():
    tokens, lengths = data.encode_names(["Abel", "Ng", "Nakamura"], extra=6)
    noisy, new_lengths = data.add_noise_batch(tokens, lengths, 5, torch.Generator().manual_seed(0))
    assert torch.all(new_lengths >= lengths) and torch.all(new_lengths <= lengths + 6)
    for i in range(3):
        L, NL = int(lengths[i]), int(new_lengths[i])
        assert torch.equal(noisy[i, :L], tokens[i, :L])
        assert set(noisy[i, L:NL].tolist()) <= set(data.NOISE_INDICES)
        assert torch.all(noisy[i, NL:] == 0)


def test_length_batches_cover_every_index_once_with_similar_lengths():
    lengths = torch.tensor([3, 9, 4, 3, 8, 5, 4, 9, 3, 7])
    batches = data.length_batches(lengths, 3, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert all(len(b) <= 3 for b in batches)
    spans = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert max(spans) <= 2


def _zip_of(folder, tamper=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.glob("*.txt")):
            payload = f.read_bytes() + (b"Extra\n" if tamper and f.name == "Greek.txt" else b"")
            zf.writestr(f"data/names/{f.name}", payload)
        zf.writestr("data/eng-fra.txt", "hello\tbonjour\n")
    return buf.getvalue()


@pytest.fixture
def fake_names(tmp_path, monkeypatch):
    """A names folder whose files match a checksum manifest patched in for the test."""
    folder = tmp_path / "src"
    folder.mkdir()
    manifest = {}
    for i, lang in enumerate(["Greek", "Korean"]):
        content = f"Name{i}a\nName{i}b\n".encode()
        (folder / f"{lang}.txt").write_bytes(content)
        manifest[f"{lang}.txt"] = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(data, "NAMES_SHA256", manifest)
    return folder


def test_download_verifies_and_extracts_atomically(tmp_path, fake_names):
    archive = tmp_path / "data.zip"
    archive.write_bytes(_zip_of(fake_names))
    cache = tmp_path / "cache"
    got = data.download_tutorial_data(cache, url=archive.as_uri())
    assert sorted(p.name for p in got.iterdir()) == ["Greek.txt", "Korean.txt"]
    assert [p.name for p in cache.iterdir()] == ["names"]  # no temporary leftovers
    archive.unlink()
    assert data.download_tutorial_data(cache, url=archive.as_uri()) == got  # cached: no download


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, fake_names):
    archive = tmp_path / "data.zip"
    archive.write_bytes(_zip_of(fake_names, tamper=True))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"checksum check failed.*Greek.txt"):
        data.download_tutorial_data(cache, url=archive.as_uri())
    assert list(cache.iterdir()) == []


def test_offline_download_says_how_to_point_at_a_copy(tmp_path):
    with pytest.raises(DataError, match="--data DIR or the environment variable NAMEORIGIN_DATA"):
        data.download_tutorial_data(tmp_path, url=(tmp_path / "missing.zip").as_uri())


def test_resolve_data_prefers_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NAMEORIGIN_DATA", str(tmp_path / "env"))
    assert data.resolve_data(str(tmp_path / "flag")) == tmp_path / "flag"
    assert data.resolve_data(None) == tmp_path / "env"


def test_an_empty_language_file_is_named_when_it_is_left_out(tmp_path, caplog):
    """A folder's empty Czech.txt left training with one language; the refusal said only "found only 'Greek'"."""
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "Greek.txt").write_text("Papadopoulos\nNikolaidis\n", encoding="utf-8")
    (folder / "Czech.txt").write_text("", encoding="utf-8")
    with caplog.at_level("WARNING"):
        pairs = data.read_labelled(folder)
    assert {lang for _, lang in pairs} == {"Greek"}
    assert "Czech.txt hold(s) no readable name; left out" in caplog.text
