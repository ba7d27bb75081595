"""Prediction on Dask: the DataFrame API, a two-worker local cluster equal to one process, and bad input."""

import os
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import train_tiny
from nameorigin import cluster, predict_frame
from nameorigin.cli import main

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

PARTS = {"a.parquet": ["Kalov", "McRaboo", None, "Kalov"], "b.parquet": ["1234", "Tesuez", "McRaboo"]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("cluster"), "gru", "--hidden", "8", "--epochs", "2")[1]


@pytest.fixture
def parquet_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    start = 0
    for name, names in PARTS.items():
        pq.write_table(
            pa.table({"id": range(start, start + len(names)), "surname": pa.array(names, pa.string())}), folder / name
        )
        start += len(names)
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return (code, *capsys.readouterr())


def test_predict_on_a_dask_dataframe_equals_predict_frame(model):
    df = pd.DataFrame({"id": range(7), "surname": [n for part in PARTS.values() for n in part]})
    expected = predict_frame(df, "surname", top=2, model=model)
    ddf = dd.from_pandas(df, npartitions=3)
    result = cluster.predict(ddf, "surname", top=2, model=model)
    assert list(result.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(result.compute(scheduler="sync"), expected, check_dtype=False)


def test_two_local_workers_give_the_rows_of_one_process(capsys, tmp_path, parquet_dir, model):
    code, _, err = run(
        capsys,
        "predict",
        "--model",
        model,
        "--input",
        f"{parquet_dir}/*.parquet",
        "--output",
        tmp_path / "out",
        "--workers",
        "2",
        "--column",
        "surname",
        "--keep-columns",
        "--top",
        "2",
    )
    assert code == 0, err
    assert "7 names, 2 errors" in err
    parts = sorted(os.listdir(tmp_path / "out"))
    assert len(parts) == 2 and all(p.endswith(".parquet") for p in parts)  # one part per input partition
    got = pd.concat([pd.read_parquet(tmp_path / "out" / p) for p in parts], ignore_index=True)
    single = []
    for name in PARTS:  # the single-process CLI, file by file
        out = tmp_path / f"single-{name}"
        assert (
            run(
                capsys,
                "predict",
                "--model",
                model,
                "--input",
                parquet_dir / name,
                "--output",
                out,
                "--column",
                "surname",
                "--keep-columns",
                "--top",
                "2",
            )[0]
            == 0
        )
        single.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(got, pd.concat(single, ignore_index=True), check_dtype=False)
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


def bad_cluster_run(capsys, tmp_path, *argv):
    out = tmp_path / "out"
    code, _, err = run(capsys, "predict", "--input", *argv, "--output", out, "--workers", "1")
    assert code == 2 and "Traceback" not in err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if ".partial-" in p]
    return err


def test_a_missing_column(capsys, tmp_path, parquet_dir):
    err = bad_cluster_run(capsys, tmp_path, f"{parquet_dir}/*.parquet", "--column", "family")
    assert "a.parquet" in err and "no column 'family'" in err


def test_a_non_string_column(capsys, tmp_path, parquet_dir):
    err = bad_cluster_run(capsys, tmp_path, f"{parquet_dir}/*.parquet", "--column", "id")
    assert "a.parquet" in err and "column 'id' holds int64" in err


def test_an_unreadable_parquet_file(capsys, tmp_path, parquet_dir):
    (parquet_dir / "c.parquet").write_bytes(b"PAR1 but not really")
    err = bad_cluster_run(capsys, tmp_path, f"{parquet_dir}/*.parquet", "--column", "surname")
    assert "c.parquet: cannot be read" in err


def test_a_glob_that_matches_nothing(capsys, tmp_path):
    err = bad_cluster_run(capsys, tmp_path, f"{tmp_path}/nowhere/*.parquet")
    assert "nowhere/*.parquet: matches no files" in err


def test_an_unreachable_scheduler(capsys, tmp_path, parquet_dir, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "out"
    code, _, err = run(
        capsys,
        "predict",
        "--input",
        f"{parquet_dir}/*.parquet",
        "--column",
        "surname",
        "--output",
        out,
        "--scheduler",
        "tcp://127.0.0.1:9",
    )
    assert code == 2 and "--scheduler tcp://127.0.0.1:9: cannot reach" in err
    assert not out.exists()


def test_zero_workers(capsys, tmp_path, parquet_dir):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--input", f"{parquet_dir}/*.parquet", "--output", str(tmp_path / "out"), "--workers", "0"])
    assert exit_info.value.code == 2 and "--workers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dask_missing_says_what_to_install(capsys, tmp_path, parquet_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    err = bad_cluster_run(capsys, tmp_path, f"{parquet_dir}/*.parquet")
    assert 'pip install -c constraints.txt -e ".[cluster]"' in err


def test_other_formats_are_refused_on_the_cluster(capsys, tmp_path, parquet_dir):
    err = bad_cluster_run(capsys, tmp_path, f"{parquet_dir}/*.parquet", "--json")
    assert "--workers/--scheduler read Parquet" in err


PEOPLE = {"first": ["Ivan", "Maria", None, "Ivan"], "last": ["Kalov", "McRaboo", "Tesuez", "Kalov"]}


def test_first_and_last_columns_on_dask_equal_predict_frame(model):
    df = pd.DataFrame({"id": range(4), **PEOPLE})
    expected = predict_frame(df, top=2, model=model, first_column="first", last_column="last")
    ddf = dd.from_pandas(df, npartitions=2)
    result = cluster.predict(ddf, None, top=2, model=model, first_column="first", last_column="last")
    assert list(result.columns) == list(expected.columns) and "family_language_1" in expected.columns
    pd.testing.assert_frame_equal(result.compute(scheduler="sync"), expected, check_dtype=False)


def test_first_and_last_columns_on_local_workers_give_the_answers_of_one_process(capsys, tmp_path, model):
    folder = tmp_path / "people"
    folder.mkdir()
    pq.write_table(pa.table({"id": range(4), **PEOPLE}), folder / "a.parquet")
    flags = ["--model", model, "--first-column", "first", "--last-column", "last", "--top", "2"]
    code, _, err = run(capsys, "predict", "--input", f"{folder}/*.parquet", "--output", tmp_path / "out",
                       "--workers", "1", *flags)  # fmt: skip
    assert code == 0, err
    got = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "out").iterdir())], ignore_index=True)
    assert list(got.columns[:2]) == ["first", "last"] and "id" not in got.columns  # the columns read, then answers
    assert run(capsys, "predict", "--input", folder / "a.parquet", "--output", tmp_path / "one.parquet", *flags)[0] == 0
    one = pd.read_parquet(tmp_path / "one.parquet")
    answers = [c for c in one.columns if c not in ("line", "name")]
    pd.testing.assert_frame_equal(got[answers], one[answers], check_dtype=False)
    (tmp_path / "bad").mkdir()
    err = bad_cluster_run(capsys, tmp_path / "bad", f"{folder}/*.parquet", "--first-column", "given")
    assert "'given'" in err
