"""The same prediction over a Dask DataFrame or a glob of Parquet files on a Dask cluster, the model loaded once
per worker process. Dask is optional: the ``cluster`` extra (``pip install -c constraints.txt -e ".[cluster]"``)."""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import frame
from .atomic import partial_prefix, remove_stale
from .data import DataError
from .errors import install_hint
from .predict import Predictor

log = logging.getLogger(__name__)

#: Seconds to wait for an existing scheduler before giving up.
CONNECT_TIMEOUT_S = 5

#: Predictors loaded in this process, by model path (None: the bundled model). On a Dask worker this keeps the
#: model loaded across tasks, so it is read once per worker process and never shipped with a task.
_PREDICTORS: dict[tuple[str | None, str, str | None], Predictor] = {}


class ClusterError(DataError):
    """Dask is missing, the cluster cannot be reached, or the input cannot go to the cluster."""


def _dask():
    try:
        import dask
        import dask.dataframe as dd
        import distributed
    except ImportError as e:
        raise ClusterError(
            f"running on a Dask cluster needs Dask ({e.name} is missing): {install_hint('cluster')}"
        ) from None
    return dask, dd, distributed


def worker_predictor(model: str | None, precision: str = "fp32", first: str | None = None) -> Predictor:
    """The predictor of ``model`` at ``precision`` (with the first-name model ``first``; None: the bundled
    one when there is one) in this process, loaded on first use."""
    if (model, precision, first) not in _PREDICTORS:
        log.info("loading %s (%s) in process %d", model or "the bundled model", precision, os.getpid())
        _PREDICTORS[model, precision, first] = Predictor.load(model, first=first, precision=precision)
    return _PREDICTORS[model, precision, first]


def _predict_partition(pdf, column: str, top: int, model, precision: str, trust: dict):
    model, first = model if isinstance(model, tuple) else (model, None)
    return frame.predict_frame(pdf, column, top=top, model=worker_predictor(model, precision, first), **trust)


def predict(
    ddf,
    column: str = "name",
    *,
    top: int = 3,
    model: str | os.PathLike | None = None,
    first: str | os.PathLike | None = None,
    precision: str = "fp32",
    **trust,
):
    """:func:`nameorigin.predict_frame` on every partition of a Dask DataFrame: the input's columns, then
    ``language_k``/``probability_k``, the trust columns and ``error``, row for row as on one process.
    ``trust``: ``coverage``, ``prior`` (a mapping or ``"uniform"``; ``"auto"`` is refused: each partition would
    estimate its own mix), ``min_confidence``, ``max_out_of_scope``.

    ``model``: a checkpoint path every worker can read (None: the bundled model); each worker process loads it
    once, at ``precision`` (see :meth:`Predictor.load`), with the first-name model ``first`` (a path; None: the
    bundled one when there is one); ``name_type`` goes in ``trust`` as :func:`predict_frame` takes it.
    Raises :class:`~nameorigin.frame.ColumnError` for a
    missing or non-string column before any work.
    """
    if isinstance(model, Predictor):
        raise TypeError(
            "pass the checkpoint's path as model=, so each worker loads it once instead of "
            "receiving the model with every task"
        )
    if trust.get("prior") == "auto":
        raise ValueError(
            'prior="auto" on a Dask DataFrame: each partition would estimate its own mix; estimate '
            "it once (Predictor.estimate_prior) and pass the mapping"
        )
    model = None if model is None else str(model)
    if first is not None:
        model = (model, str(first))
    _dask()
    # the single-process output on the empty frame is the meta, so the columns and types match it exactly
    meta = _predict_partition(ddf._meta, column, top, model, precision, trust)
    return ddf.map_partitions(_predict_partition, column, top, model, precision, trust, meta=meta)


@dataclass
class ClusterJob:
    """``nameorigin predict --input GLOB --output FOLDER --workers N`` (or ``--scheduler ADDRESS``)."""

    input: str
    output: str | None
    column: str | None = None
    top: int = 3
    model: str | None = None
    keep_columns: bool = False
    workers: int | None = None
    scheduler: str | None = None
    precision: str = "fp32"
    trust: dict = field(default_factory=dict)  # predict_frame's coverage, prior (a mapping), thresholds, name_type
    first_model: str | None = None  # the first-name checkpoint (None: the bundled one when there is one)
    first_column: str | None = None  # a column of first names (the input's columns are then all kept)
    last_column: str | None = None  # a column of last names

    @property
    def split(self) -> bool:
        return self.first_column is not None or self.last_column is not None


def _check_inputs(job: ClusterJob) -> tuple[list[str], dict[str, str | None]]:
    """The Parquet files the glob matches, and the columns read: the name column (None with first or last
    columns and no ``--column``), the first names', the last names'; every footer is read here, so a missing
    column, a non-string column or an unreadable file stops the run before any output exists."""
    import fsspec

    fs, _, paths = fsspec.core.get_fs_token_paths(job.input)
    if not paths:
        raise ClusterError(f"{job.input}: matches no files")
    # what to resolve in each footer: the name column (None: the one found by its header) unless first or last
    # columns replace it, and those
    wanted = {"first_column": job.first_column, "last_column": job.last_column}
    if job.column is not None or not job.split:
        wanted = {"column": job.column, **wanted}
    wanted = {k: c for k, c in wanted.items() if c is not None or k == "column"}
    columns: dict[str, str | None] = {"column": None, "first_column": None, "last_column": None}
    for path in paths:
        if frame.format_of(path) != "parquet":
            raise ClusterError(
                f"{path}: --workers/--scheduler read Parquet files; convert it first with "
                f"`nameorigin predict --input {path} --output NAME.parquet`"
            )
        try:
            with fs.open(path, "rb") as fh:
                schema = pq.read_schema(fh)
        except Exception as e:
            raise frame.unreadable(path, e) from None
        for key, given in wanted.items():
            name = frame.resolve_column(path, schema.names, given)
            frame.string_array(pa.array([], schema.field(name).type), name, path)
            columns[key] = columns[key] or name
    return paths, columns


def _client(job: ClusterJob, distributed):
    if job.scheduler:
        try:
            return distributed.Client(job.scheduler, timeout=CONNECT_TIMEOUT_S), None
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(
                f"--scheduler {job.scheduler}: cannot reach the Dask scheduler "
                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
            ) from None
    quiet = logging.WARNING if not log.isEnabledFor(logging.INFO) else logging.INFO
    logging.getLogger("distributed").setLevel(quiet)
    cluster = distributed.LocalCluster(
        n_workers=job.workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=quiet
    )
    return distributed.Client(cluster), cluster


def predict_files(job: ClusterJob) -> frame.Summary:
    """Predict a glob of Parquet files on a Dask cluster into a folder of Parquet parts, one part per input
    partition, with the same columns as the single-process output. The parts are written into a hidden folder
    beside ``job.output`` that is renamed onto it only when every partition succeeded."""
    dask, dd, distributed = _dask()
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    if not job.output or job.output == "-":
        raise ClusterError("--workers/--scheduler write a folder of Parquet parts: give --output FOLDER")
    start = time.perf_counter()
    _paths, columns = _check_inputs(job)
    column = columns["column"]
    fs, out = fsspec.core.url_to_fs(job.output)
    if fs.exists(out) and (not fs.isdir(out) or fs.ls(out)):
        raise ClusterError(f"--output {job.output}: exists and is not an empty folder")
    parent = os.path.dirname(out.rstrip("/")) or "."
    if isinstance(fs, LocalFileSystem):
        remove_stale(Path(out.rstrip("/")))
    staging = f"{parent}/{partial_prefix(Path(out.rstrip('/')))}{secrets.token_hex(4)}"
    client, cluster = _client(job, distributed)
    try:
        parts = {k: columns[k] for k in ("first_column", "last_column") if columns[k] is not None}
        if job.split:  # the columns read stay (predict_frame's output): the name column if any, first, last
            read = None if job.keep_columns else list(dict.fromkeys(c for c in columns.values() if c is not None))
            ddf, target = dd.read_parquet(job.input, columns=read), column
        else:
            ddf = dd.read_parquet(job.input, columns=None if job.keep_columns else [column])
            if not job.keep_columns:
                ddf = ddf.rename(columns={column: "name"})
            target = "name" if not job.keep_columns else column
        result = predict(
            ddf,
            target,
            top=job.top,
            model=job.model,
            first=job.first_model,
            precision=job.precision,
            **parts,
            **job.trust,
        )
        write = result.to_parquet(fs.unstrip_protocol(staging), write_index=False, compute=False)
        _, names, errors, abstained = dask.compute(
            write, result["error"].size, result["error"].count(), result["abstained"].eq(True).sum()
        )
        if fs.exists(out):
            fs.rm(out, recursive=True)
        fs.mv(staging, out, recursive=True)
    except BaseException as e:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
        if isinstance(e, Exception) and not isinstance(e, DataError):
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ClusterError(f"{job.input}: prediction on the cluster failed ({why}); nothing was written") from e
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return frame.Summary(
        names=int(names), errors=int(errors), abstained=int(abstained), seconds=time.perf_counter() - start
    )
