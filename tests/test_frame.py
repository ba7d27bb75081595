"""predict_frame on pandas, polars and Arrow; the columnar core; the file formats as record batches."""

import csv
import fcntl
import json
import os

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import train_tiny
from nameorigin import Predictor, predict_frame
from nameorigin.atomic import atomic_path
from nameorigin.frame import ColumnError, FileJob, open_source, predict_file
from nameorigin.predict import MISSING, NOT_STRING, fold_array, fold_or_error

NAMES = ["Kalov", None, "McRaboo", "1234", "Kalov", " Kalov ", "Tesuez"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    _, model = train_tiny(
        tmp_path_factory.mktemp("frame"),
        "gru",
        "--hidden",
        "16",
        "--epochs",
        "15",
        "--lr",
        "0.02",
        "--batch-size",
        "16",
    )
    return Predictor.load(model)


def expected(predictor, names, top=2):
    """The per-name Prediction objects of the same names: what every columnar path must agree with."""
    return predictor.predict(names, top)


def assert_agrees(rows: list[dict], predictions, top=2):
    assert len(rows) == len(predictions)
    for row, p in zip(rows, predictions, strict=False):
        if p.error:
            assert row["error"] == p.error and row["language_1"] is None and row["probability_1"] is None
            continue
        assert row["error"] is None
        for k, x in enumerate(p.predictions, 1):
            assert row[f"language_{k}"] == x["language"]
            assert row[f"probability_{k}"] == pytest.approx(x["probability"], abs=1e-6)
        assert row["abstained"] == p.abstained and row["reason"] == p.reason
        assert row["out_of_scope"] == pytest.approx(p.out_of_scope, abs=1e-4)  # 4 decimals in CSV
        assert row.get("set") == p.set


def test_predict_columns_is_the_columnar_form_of_predict(predictor):
    table = predictor.predict_columns(NAMES, top=2, name_type="surname")
    assert table.column_names == [
        "name",
        "language_1",
        "probability_1",
        "language_2",
        "probability_2",
        "abstained",
        "reason",
        "out_of_scope",
        "error",
    ]
    rows = table.to_pylist()
    assert [r["name"] for r in rows] == NAMES
    assert rows[1]["error"] == MISSING and "folds to nothing" in rows[3]["error"]
    assert rows[0]["language_1"] == "Alpha" and rows[2]["language_1"] == "Beta"
    good = [i for i, n in enumerate(NAMES) if n and n != "1234"]
    assert_agrees([rows[i] for i in good], expected(predictor, [NAMES[i] for i in good]))
    assert predictor.predict_columns([], top=2).num_rows == 0


def test_each_distinct_folded_name_reaches_the_model_once(predictor, monkeypatch):
    fresh = Predictor(predictor.checkpoint)
    seen: list[list[str]] = []
    run = fresh._run
    monkeypatch.setattr(fresh, "_run", lambda folded: seen.append(list(folded)) or run(folded))
    fresh.predict_columns(NAMES, top=1, name_type="surname")
    assert seen == [["Kalov", "McRaboo", "Tesuez"]]  # "Kalov" x3 (one with spaces), None and "1234" never
    fresh.predict_columns(["Tesuez", "Kalov", "Nabov"], top=1, name_type="surname")
    assert seen[1:] == [["Nabov"]]  # the cache spans chunks
    uncached = Predictor(predictor.checkpoint, cache_size=0)
    assert uncached.predict_columns(NAMES, top=1).equals(fresh.predict_columns(NAMES, top=1))
    assert uncached.predict_columns(NAMES, top=1, name_type="surname").equals(
        fresh.predict_columns(NAMES, top=1, name_type="surname")
    )


def test_non_string_cells_get_an_error(predictor):
    rows = predictor.predict_columns(["Kalov", 42, 3.5], top=1).to_pylist()
    assert rows[0]["error"] is None
    assert rows[1]["error"].startswith(NOT_STRING) and rows[2]["error"].startswith(NOT_STRING)


@pytest.mark.parametrize(
    "bad, says",
    [
        ("\ud800", "lone surrogate"),
        ("Ko\udcffs", "lone surrogate"),
        (b"Zhou", "not a string (bytes)"),
        (bytearray(b"Li"), "not a string"),
    ],
)
def test_an_unreadable_cell_is_an_error_row_for_that_name_only(predictor, bad, says):
    alone = predictor.predict(["Kalov", "Nabov"], top=2)
    results = predictor.predict(["Kalov", bad, "Nabov"], top=2)
    assert says in results[1].error and results[1].predictions == []
    assert [r.to_dict() for r in (results[0], results[2])] == [r.to_dict() for r in alone]
    names = pd.Series(["Kalov", bad, "Nabov"], dtype=object)  # pandas cannot store these as its string dtype
    out = predict_frame(pd.DataFrame({"name": names}), top=1, model=predictor)
    assert list(out["error"].isna()) == [True, False, True] and says in out["error"][1]


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow"])
def test_predict_frame_returns_the_same_kind_with_prediction_columns(predictor, kind):
    data = {"id": list(range(len(NAMES))), "surname": NAMES}
    df = {
        "pandas": lambda: pd.DataFrame(data, index=[10 + i for i in range(len(NAMES))]),
        "polars": lambda: pl.DataFrame(data),
        "arrow": lambda: pa.table(data),
    }[kind]()
    out = predict_frame(df, "surname", top=2, model=predictor, name_type="surname")
    assert type(out) is type(df)
    columns = list(out.columns) if kind != "arrow" else out.column_names
    assert columns == [
        "id",
        "surname",
        "language_1",
        "probability_1",
        "language_2",
        "probability_2",
        "abstained",
        "reason",
        "out_of_scope",
        "error",
    ]
    if kind == "pandas":
        assert list(out.index) == list(df.index)
        rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in out.to_dict("records")]
    else:
        rows = out.to_dicts() if kind == "polars" else out.to_pylist()
    assert [r["id"] for r in rows] == data["id"]
    assert_agrees(rows, expected(predictor, [n if isinstance(n, str) else "" for n in NAMES]))
    assert rows[1]["error"] == MISSING


def test_pandas_object_column_with_other_cells(predictor):
    df = pd.DataFrame({"name": ["Kalov", 7, float("nan"), None]})
    out = predict_frame(df, top=1, model=predictor)
    assert list(out["error"].isna()) == [True, False, False, False]
    assert out["error"][1].startswith(NOT_STRING) and list(out["error"][2:]) == [MISSING, MISSING]


@pytest.mark.parametrize(
    "df", [pd.DataFrame({"name": [1, 2]}), pl.DataFrame({"name": [1.5]}), pa.table({"name": pa.array([True])})]
)
def test_a_non_string_column_is_a_clear_error(predictor, df):
    with pytest.raises(ColumnError, match="column 'name' holds"):
        predict_frame(df, model=predictor)


def test_a_missing_column_is_a_clear_error(predictor):
    with pytest.raises(ValueError, match="no column 'surname'"):
        predict_frame(pd.DataFrame({"name": ["Kalov"]}), "surname", model=predictor)


def test_columns_that_would_clash_are_refused(predictor):
    with pytest.raises(ColumnError, match="error"):
        predict_frame(pd.DataFrame({"name": ["Kalov"], "error": [1]}), model=predictor)


def test_predict_frame_applies_coverage_and_an_auto_prior_of_the_whole_column(predictor):
    names = ["Kalov", "Kalov", "Kalov", "McRaboo", "Tesuez", "Nabov", None]
    out = predict_frame(pa.table({"name": names}), model=predictor, coverage=0.9, prior="auto")
    assert out.schema.field("set").type == pa.list_(pa.string())
    want, used = predictor.predict_with_prior([n or "" for n in names], 2, coverage=0.9, prior="auto")
    assert_agrees(out.to_pylist(), want)
    assert all(p.set and p.set[0] == p.predictions[0]["language"] for p in want[:-1])
    # distinct names weighted by their counts give the mix of every row, as EM over all of them does (with the
    # shrinkage of the distinct count: a repeated name is no new evidence)
    from nameorigin.trust import estimate_prior, pseudo_names

    rows = names[:-1]
    strength = pseudo_names(len(predictor.labels)) * len(rows) / len(set(rows))
    every_row = estimate_prior(
        predictor.probabilities(rows).probs.double().numpy(),
        predictor.trust.prior_base,
        start=predictor.trust.train_prior,
        strength=strength,
    )
    assert list(used.values()) == pytest.approx(every_row.tolist(), abs=1e-5)
    assert predictor.estimate_prior(names[:-1]) == pytest.approx(used, abs=1e-6)


def test_file_outputs_carry_the_trust_columns(predictor, tmp_path):
    src = tmp_path / "names.txt"
    src.write_text("Kalov\n1234\nMcRaboo\n")
    job = dict(input=str(src), trust={"coverage": 0.9}, name_type="surname")
    predict_file(predictor, FileJob(output=str(tmp_path / "o.csv"), **job))
    predict_file(predictor, FileJob(output=str(tmp_path / "o.parquet"), **job))
    with open(tmp_path / "o.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    table = pq.read_table(tmp_path / "o.parquet").to_pylist()
    want = predictor.predict(["Kalov", "1234", "McRaboo"], 3, coverage=0.9)
    assert list(rows[0])[-5:] == ["abstained", "reason", "out_of_scope", "set", "error"]
    for row, got, p in zip(rows, table, want, strict=False):
        # one value for an error row's ``abstained`` in every output: false, as Prediction and --json give it
        assert got["set"] == p.set and got["abstained"] is p.abstained and (not p.error or p.abstained is False)
        assert row["set"] == "|".join(p.set or []) and row["abstained"] == str(p.abstained).lower()
        if p.out_of_scope is not None:
            assert float(row["out_of_scope"]) == pytest.approx(round(p.out_of_scope, 4), abs=1e-9)


def write_input(path, fmt, names):
    if fmt == "txt":
        path.write_text("\n".join(n or "" for n in names) + "\n", encoding="utf-8")
    elif fmt in ("csv", "tsv"):
        pd.DataFrame({"id": range(len(names)), "name": names}).to_csv(
            path, sep="," if fmt == "csv" else "\t", index=False
        )
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"id": i, "name": n}) + "\n" for i, n in enumerate(names)))
    else:
        pq.write_table(pa.table({"id": range(len(names)), "name": pa.array(names, pa.string())}), path)


def read_output(path, fmt) -> list[dict]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    df = pd.read_csv(path, sep="," if fmt == "csv" else "\t", keep_default_na=False, dtype=str)
    rows = df.to_dict("records")
    for r in rows:
        for k, v in r.items():
            r[k] = (
                None
                if v == ""
                else float(v)
                if k.startswith("probability_") or k == "out_of_scope"
                else v == "true"
                if k == "abstained"
                else v
            )
    return rows


@pytest.mark.parametrize("fmt_in", ["txt", "csv", "tsv", "jsonl", "parquet"])
@pytest.mark.parametrize("fmt_out", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_in_and_out(predictor, tmp_path, fmt_in, fmt_out):
    names = ["Kalov", "McRaboo", "1234", "Kalov"]
    src, dst = tmp_path / f"in.{fmt_in}", tmp_path / f"out.{fmt_out}"
    write_input(src, fmt_in, names)
    summary = predict_file(predictor, FileJob(input=str(src), output=str(dst), top=2, chunk=3))
    assert (summary.names, summary.errors) == (4, 1)
    rows = read_output(dst, fmt_out)
    assert [r["name"] for r in rows] == names
    if fmt_in in ("txt", "csv", "tsv"):
        assert [int(r["line"]) for r in rows] == ([1, 2, 3, 4] if fmt_in == "txt" else [2, 3, 4, 5])
    else:
        assert "line" not in rows[0]
    assert_agrees(rows, expected(predictor, names))
    assert sorted(os.listdir(tmp_path)) == sorted([src.name, dst.name])


def test_text_input_strips_line_ends_and_skips_blank_lines(predictor, tmp_path):
    src = tmp_path / "names.txt"
    src.write_bytes("Kalov\r\n\n   \nŠčerbov\r\nMcRaboo".encode())
    rows = [b.to_pylist() for b in open_source(str(src)).batches]
    assert [row for chunk in rows for row in chunk] == [
        {"line": 1, "name": "Kalov"},
        {"line": 4, "name": "Ščerbov"},
        {"line": 5, "name": "McRaboo"},
    ]
    with open(src, encoding="utf-8") as fh:  # the README's Predictor.stream(open("names.txt"))
        assert [p.name for p in predictor.stream(fh)] == ["Kalov", "Ščerbov", "McRaboo"]


def test_keep_columns_and_headerless_csv(predictor, tmp_path):
    src = tmp_path / "people.csv"
    src.write_text("Kalov,x\nMcRaboo,y\n")
    dst = tmp_path / "out.parquet"
    predict_file(predictor, FileJob(input=str(src), output=str(dst), top=1, keep_columns=True, name_type="surname"))
    table = pq.read_table(dst)
    assert table.column_names == [
        "line",
        "column_0",
        "column_1",
        "language_1",
        "probability_1",
        "abstained",
        "reason",
        "out_of_scope",
        "error",
    ]
    assert table.column("column_1").to_pylist() == ["x", "y"] and table.column("line").to_pylist() == [1, 2]


def test_an_unreadable_or_empty_input_writes_nothing(predictor, tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    dst = tmp_path / "out.csv"
    with pytest.raises(ValueError, match=r"bad.parquet: cannot be read"):
        predict_file(predictor, FileJob(input=str(bad), output=str(dst)))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty.txt: has no names"):
        predict_file(predictor, FileJob(input=str(empty), output=str(dst)))
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet", "empty.txt"]


def test_file_outputs_go_through_atomic_path_which_removes_partials_of_killed_runs(tmp_path, predictor):
    src = tmp_path / "names.txt"
    src.write_text("Kalov\n")
    stale = tmp_path / ".out.csv.partial-abcd"  # left by a killed run into the same target
    stale.write_text("half")
    stale_dir = tmp_path / ".out.csv.partial-parts"  # a killed cluster run's staging folder
    stale_dir.mkdir()
    other = tmp_path / ".other.csv.partial-abcd"  # another target's, left by a killed run: removed too
    other.write_text("dead")
    live = tmp_path / ".other.csv.partial-live"  # another target's, held by a live writer: left alone
    live.write_text("busy")
    other_dir = tmp_path / ".other.csv.partial-parts"  # another target's staging folder: may be live, left alone
    other_dir.mkdir()
    with open(live) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        predict_file(predictor, FileJob(input=str(src), output=str(tmp_path / "out.csv")))
    assert (tmp_path / "out.csv").read_text().replace('"', "").startswith("line,name")
    assert not stale.exists() and not stale_dir.exists() and not other.exists()
    assert live.exists() and other_dir.exists()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not list(tmp_path.glob(".x.csv.partial-*")) and not (tmp_path / "x.csv").exists()


def test_a_full_cache_starts_over_and_answers_stay_the_same(predictor):
    names = ["Kalov", "McRaboo", "Tesuez", "Nabov", "Kalov", "Rateii", "McRaboo"] * 3
    small = Predictor(predictor.checkpoint, cache_size=2)
    plain = Predictor(predictor.checkpoint, cache_size=0)
    for _ in range(2):
        got, want = small.predict_columns(names, top=2), plain.predict_columns(names, top=2)
        assert got.column("language_1").equals(want.column("language_1"))
        assert pc_close(got.column("probability_1"), want.column("probability_1"))


def pc_close(a, b) -> bool:
    import numpy as np

    return np.allclose(a.to_numpy(), b.to_numpy(), atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=80), st.text(alphabet=" abcXYZ.,;'\t", max_size=70), st.just("x" * 300)), max_size=20
    )
)
def test_the_vectorised_fold_equals_fold_one_by_one(values):
    folded, errors = fold_array(pa.array(values, pa.string()))
    assert list(zip(folded.to_pylist(), errors.to_pylist(), strict=False)) == [fold_or_error(v) for v in values]


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_spreadsheet_formulas_are_neutralised_in_every_column_unless_asked(predictor, tmp_path, fmt):
    sep = "," if fmt == "csv" else "\t"
    src = tmp_path / f"in.{fmt}"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh, delimiter=sep)
        w.writerow(["name", "comment"])
        w.writerows([[f, f] for f in FORMULAS] + [["Kalov", "=1+1"], ["Nabov", "fine"]])
    for keep in (False, True):
        dst = tmp_path / f"out-{keep}.{fmt}"
        predict_file(predictor, FileJob(input=str(src), output=str(dst), top=1, keep_columns=True, keep_formulas=keep))
        with open(dst, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter=sep))
        cells = [r[k] for r in rows for k in ("name", "comment")]
        if keep:
            assert cells == [c for f in FORMULAS for c in (f, f)] + ["Kalov", "=1+1", "Nabov", "fine"]
        else:
            assert cells == [c for f in FORMULAS for c in ("'" + f, "'" + f)] + ["Kalov", "'=1+1", "Nabov", "fine"]
            assert not any(v[:1] in "=+-@\t\r" for r in rows for v in r.values() if v)
        assert rows[-1]["language_1"] and float(rows[-1]["probability_1"]) > 0  # the rest as it was


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=8), min_size=1, max_size=4),
    st.booleans(),
    st.integers(0, 3),
)
def test_the_first_byte_check_finds_what_the_formula_pattern_finds(chunks, large, cut):
    """The buffer-level check (each cell's first byte) agrees with FORMULA_START on any text: nulls, empty
    cells, non-ASCII first characters, large strings, chunks sliced (an offset into their buffers), empty ones."""
    import numpy as np
    import pyarrow.compute as pc

    from nameorigin.frame import FORMULA_START, _formula_rows

    kind = pa.large_string() if large else pa.string()
    column = pa.chunked_array([pa.array(c, kind).slice(min(cut, len(c))) for c in chunks], kind)
    expected = np.asarray(pc.fill_null(pc.match_substring_regex(column, FORMULA_START), False))
    assert _formula_rows(column).tolist() == expected.tolist()


def test_predict_keep_formulas_flag(tmp_path):
    from nameorigin.cli import main

    src = tmp_path / "in.txt"
    src.write_text("=1+1\nSmith\n")
    for flags, first in (([], "'=1+1"), (["--keep-formulas"], "=1+1")):
        dst = tmp_path / f"out{len(flags)}.csv"
        assert main(["predict", "--input", str(src), "--output", str(dst), *flags]) == 0
        with open(dst, newline="") as fh:
            assert next(csv.DictReader(fh))["name"] == first
