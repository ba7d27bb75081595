"""DataFrames and Arrow tables in and out, and the file formats (text, CSV/TSV, JSON lines, Parquet) as record
batches, so that a file of any length streams through :meth:`Predictor.predict_columns` with flat memory."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from .atomic import atomic_path
from .data import FIRST_HEADERS, FULL_HEADERS, NAME_HEADERS, DataError, _is_header, header_key, not_utf8
from .fullname import DEFAULT_NAME_TYPE, part_column_names, parts_of_row
from .predict import Predictor
from .trust import resolve_prior

log = logging.getLogger(__name__)

#: Formats by file extension; ``--format`` overrides.
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: Rows a record batch holds while streaming a file.
CHUNK_ROWS = 1 << 16
TEXT_BLOCK_BYTES = 1 << 20


class ColumnError(DataError):
    """The name column is missing or does not hold strings; the message names the column and the input."""


# ------------------------------------------------------------------------------------------- DataFrames


def _predictor(model) -> Predictor:
    return model if isinstance(model, Predictor) else Predictor.load(model)


def predict_table_columns(predictor: Predictor, names, *, top: int = 3, chunk: int = CHUNK_ROWS, **trust) -> pa.Table:
    """:meth:`Predictor.predict_columns` of surnames (``name_type`` surname) over names of any length (Arrow
    array or list), ``chunk`` at a time."""
    parts = [predictor.predict_columns(part, top, name_type="surname", **trust) for part in _chunks(names, chunk)]
    return pa.concat_tables(parts)


def chunk_of(values, start: int, chunk: int = CHUNK_ROWS):
    """Rows ``start`` to ``start + chunk`` of an Arrow array or list (None stays None)."""
    if values is None:
        return None
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return values[start : start + chunk]


def _length(*columns) -> int:
    return next(len(c) for c in columns if c is not None)


def _chunks(names, chunk: int) -> Iterator:
    """``names`` (Arrow array or list) ``chunk`` at a time; one empty chunk when there are none."""
    names = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names
    return (names[i : i + chunk] for i in range(0, max(len(names), 1), chunk))


def _frame_kind(df) -> str:
    if isinstance(df, pa.Table):
        return "arrow"
    module = type(df).__module__.split(".")[0]
    if module in ("pandas", "polars") and type(df).__name__ == "DataFrame":
        return module
    raise TypeError(f"predict_frame takes a pandas or polars DataFrame or a pyarrow Table, not {type(df).__name__}")


def string_array(values: pa.Array | pa.ChunkedArray, column: str, where: str) -> pa.Array:
    """The name column as an Arrow string array, or :class:`ColumnError` when it holds something else."""
    t = values.type
    if pa.types.is_dictionary(t):
        t = t.value_type
        values = values.cast(t)
    if pa.types.is_null(t):
        return values.cast(pa.string())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return values.cast(pa.string()) if not pa.types.is_string(t) else values
    raise ColumnError(f"{where}: column {column!r} holds {t}, not strings (names)")


def _names_of(df, kind: str, column: str) -> pa.Array | list:
    where = f"the {kind} frame"
    columns = list(df.column_names if kind == "arrow" else df.columns)
    if column not in columns:
        raise ColumnError(f"{where}: no column {column!r}; it has {columns}")
    if kind == "arrow":
        return string_array(df.column(column), column, where)
    if kind == "polars":
        return string_array(df.get_column(column).to_arrow(), column, where)
    series = df[column]
    if series.dtype == object:  # Python objects: strings, missing values, and maybe other cells
        return series.where(series.notna(), None).tolist()
    try:
        return string_array(pa.array(series, from_pandas=True), column, where)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise ColumnError(f"{where}: column {column!r} holds {series.dtype}, not strings (names)") from None


def predict_frame(
    df,
    column: str | None = None,
    *,
    top: int = 3,
    model=None,
    coverage: float | None = None,
    prior=None,
    min_confidence: float | None = None,
    max_out_of_scope: float | None = None,
    name_type: str = DEFAULT_NAME_TYPE,
    first_column: str | None = None,
    last_column: str | None = None,
):
    """Predict the origin of every name in ``df[column]``.

    ``df``: a pandas or polars DataFrame or a pyarrow Table. Returns the same kind with the input's columns,
    then ``language_1, probability_1, ..., language_K, probability_K``, ``abstained``, ``reason``,
    ``out_of_scope`` (with ``coverage`` also ``set``, a list of languages) and ``error`` (null when the name was
    read; a missing value, a non-string cell or an unreadable name gets an error, never an exception). Each
    distinct name is computed once. ``model``: a :class:`Predictor`, a checkpoint path, or None for the
    bundled model. ``coverage``, ``prior`` and the thresholds are :meth:`Predictor.predict`'s; ``prior="auto"``
    is estimated over the whole column first. ``column`` defaults to ``name``.

    Full and first names: ``name_type`` as :meth:`Predictor.predict` takes it (any but ``surname`` adds each
    row's parts as columns); ``first_column``/``last_column`` name columns of first and last names (either or
    both; ``column``, given as well, fills the side without a column of its own).
    Raises :class:`ColumnError` (a ``ValueError``) for a missing or non-string column.
    """
    kind = _frame_kind(df)
    split = first_column is not None or last_column is not None
    names = _names_of(df, kind, column or "name") if column is not None or not split else None
    parts = {
        key: _names_of(df, kind, c) if c is not None else None
        for key, c in (("first_names", first_column), ("last_names", last_column))
    }
    predictor = _predictor(model)
    prior = resolve_prior(prior, predictor.labels)  # read once (a file), checked before any work
    starts = range(0, max(_length(names, *parts.values()), 1), CHUNK_ROWS)  # the chunks of full or first names
    if isinstance(prior, str) and (split or name_type != "surname"):  # the mix of the whole frame's answers
        prior = predictor._estimate_prior_parts(
            ((chunk_of(names, i), chunk_of(parts["first_names"], i), chunk_of(parts["last_names"], i)) for i in starts),
            name_type,
            max_out_of_scope=max_out_of_scope,
        )[0]
    elif isinstance(prior, str):  # "auto": the mix of the whole column, not of each chunk
        prior = predictor.estimate_prior_batches(_chunks(names, CHUNK_ROWS))
    options = dict(coverage=coverage, prior=prior, min_confidence=min_confidence, max_out_of_scope=max_out_of_scope)
    if split or name_type != "surname":
        preds = pa.concat_tables(
            predictor.predict_columns(
                chunk_of(names, i), top, name_type=name_type, **{k: chunk_of(v, i) for k, v in parts.items()}, **options
            )
            for i in starts
        )
    else:
        preds = predict_table_columns(predictor, names, top=top, **options)
    preds = preds.drop_columns(["name"])
    taken = set(df.column_names if kind == "arrow" else df.columns) & set(preds.column_names)
    if taken:
        raise ColumnError(f"the {kind} frame already has column(s) {sorted(taken)}; rename them first")
    if kind == "arrow":
        for name in preds.column_names:
            df = df.append_column(name, preds.column(name))
        return df
    if kind == "polars":
        import polars as pl

        return pl.concat([df, pl.from_arrow(preds)], how="horizontal")
    import pandas as pd

    out = preds.to_pandas()
    out.index = df.index
    return pd.concat([df, out], axis=1)


# ------------------------------------------------------------------------------------------- file formats


def format_of(path: str, override: str | None = None, *, flag: str = "--format") -> str:
    """The format of ``path``: ``override``, else its extension."""
    if override:
        return override
    suffix = Path(str(path)).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(FORMATS))} or "
            f"{flag} {{{','.join(sorted(set(FORMATS.values())))}}}"
        )
    return FORMATS[suffix]


@dataclass
class Source:
    """An input file opened as a stream of record batches; ``column`` holds the names."""

    path: str
    fmt: str
    column: str
    columns: list[str]  # the input's own columns, in order
    batches: Iterator[pa.RecordBatch]
    rows: int | None = None  # known ahead (Parquet), for the progress bar
    has_line: bool = False  # text formats: each batch also has ``line``, the row's line in the file
    delimiter: str | None = None  # CSV/TSV: the one found in the file
    headerless: bool = False  # CSV/TSV without a header row: columns named column_0, column_1, ...


def resolve_column(path: str, columns: list[str], column: str | None) -> str:
    """The name column: ``column`` as a header name or 0-based index, else the first header of whole names
    (``full_name``), else the first name-like header (``name``, ``surname``, ``last``, ``family_name``...), else
    the first column."""
    if column is None:
        for headers in (FULL_HEADERS, NAME_HEADERS):
            found = next((c for c in columns if header_key(c) in headers), None)
            if found is not None:
                return found
        return columns[0]
    if column in columns:
        return column
    if column.isdigit():
        if int(column) < len(columns):
            return columns[int(column)]
        raise ColumnError(f"{path}: no column {column} (it has {len(columns)} column(s): {columns})")
    hint = (
        "; standard input is read as text, one name a line: give --format csv (or tsv, jsonl) for a table"
        if path == STDIN and columns == ["name"]
        else ""
    )
    raise ColumnError(f"{path}: no column {column!r}; it has {columns}{hint}")


def column_note(source: Source, chosen_by_user: bool) -> str | None:
    """The line that says which column of a many-column input holds the names (None for one column)."""
    if chosen_by_user or len(source.columns) < 2:
        return None
    sep = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}.get(source.delimiter or "", "")
    how = f"{sep}-separated, " if sep else ""
    if header_key(source.column) in NAME_HEADERS:
        why = "its header looks like a name's"
    elif source.column.startswith("column_") and source.headerless:
        why = "no header row, so the first column; choose another with --column N"
    else:
        why = (
            "no header looks like a name's (name, surname, last name, family name), so the first; "
            "choose another with --column"
        )
    note = f"{source.path}: {how}{len(source.columns)} columns; names from column {source.column!r} ({why})"
    first = next((c for c in source.columns if header_key(c) in FIRST_HEADERS), None)
    if first is not None and header_key(source.column) not in FULL_HEADERS:
        note += (
            f"; it also has a column of first names, {first!r}: --first-column {shlex.quote(first)} "
            f"--last-column {shlex.quote(source.column)} reads each name from both"
        )
    return note


def unreadable(path: str, e: Exception) -> DataError:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    bad_text = re.search(r"Row #(\d+): CSV conversion error to string: invalid UTF8", message)
    if bad_text:  # Arrow's reader found it past the sample: the same advice as for the sample
        return not_utf8(path, line=int(bad_text.group(1)))
    return DataError(f"{path}: cannot be read ({message})")


BOM = b"\xef\xbb\xbf"
#: Longest line a text file may have before it is refused (no line end this far in: not names, one a line).
MAX_LINE_BYTES = 1 << 24
_LINE_END = re.compile("\r\n|\r|\n")


def _read_text(path: str, fh, block: int = TEXT_BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """One name a line from the binary stream ``fh``: line ends (``\\n``, ``\\r\\n`` or a lone ``\\r``)
    stripped, a leading byte-order mark dropped, blank lines skipped, ``line`` numbers kept; memory stays
    within a block and one line (a line over :data:`MAX_LINE_BYTES` is refused)."""
    line, rest, first = 1, b"", True
    with fh:
        while True:
            data = fh.read(block)
            buf = rest + data
            if first and buf.startswith(BOM):
                buf, first = buf[len(BOM) :], False
            elif first and len(buf) >= len(BOM):
                first = False
            if not data:
                cut = len(buf)
            else:
                # up to the last line end; a final \r may be half of a \r\n cut in two: the next block tells
                seen = buf[:-1] if buf.endswith(b"\r") else buf
                cut = max(seen.rfind(b"\n"), seen.rfind(b"\r")) + 1
            rest = buf[cut:]
            if len(rest) > MAX_LINE_BYTES:
                raise DataError(
                    f"{path}: line {line} runs over {MAX_LINE_BYTES >> 20} MiB without a line end; "
                    "expected names, one a line"
                )
            if cut:
                try:
                    lines = _LINE_END.split(buf[:cut].decode("utf-8"))
                except UnicodeDecodeError as e:
                    raise not_utf8(path, e, data=buf, line=line) from None
                if lines[-1] == "":
                    lines.pop()
                names = pa.array(lines, pa.string())
                numbers = pa.array(np.arange(line, line + len(lines), dtype=np.int64))
                keep = pc.not_equal(pc.utf8_trim_whitespace(names), "")
                line += len(lines)
                yield pa.record_batch([numbers.filter(keep), names.filter(keep)], names=["line", "name"])
            if not data:
                return


class _Replay(io.RawIOBase):
    """A binary stream: ``head`` (already read, to sniff the header) and then the rest of ``rest``, which is
    closed with it when ``own`` (a stream the caller lent, such as standard input, is not)."""

    def __init__(self, head: bytes, rest, *, own: bool = True):
        self.head, self.rest, self.own = head, rest, own

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.own:
            self.rest.close()
        super().close()


def _head(fh, want: int = 1 << 16) -> bytes:
    """The stream's first bytes: at least one whole line (or all of it), ``want`` or more when there are."""
    head = b""
    while len(head) < want or not re.search(b"[\r\n]", head):
        data = fh.read(want)
        if not data:
            break
        head += data
        if len(head) > MAX_LINE_BYTES:
            break
    return head


def _sniff(head: str, default: str) -> str:
    """The delimiter of a CSV/TSV: the extension's own if the first line has it, else the one of ``,`` ``;``
    tab ``|`` that :class:`csv.Sniffer` finds in the first lines, else the extension's."""
    first = _LINE_END.split(head, 1)[0]
    if default in first:
        return default
    try:
        return csv.Sniffer().sniff("\n".join(_LINE_END.split(head)[:50]), delimiters=",;\t|").delimiter
    except csv.Error:
        return default


def _csv_header(path: str, head: str, delimiter: str, column: str | None) -> tuple[list[str] | None, int]:
    """The header row (or None) and the column count, read with :mod:`csv` from the first record."""
    first = next((row for row in csv.reader(io.StringIO(head, newline=""), delimiter=delimiter) if row), None)
    if first is None:
        raise DataError(f"{path}: is empty (no names)")
    cells = [c.strip() for c in first]
    named = column is not None and not column.isdigit()
    return (cells if named or _is_header(first) or any(header_key(c) in NAME_HEADERS for c in first) else None), len(
        first
    )


def _read_csv(path: str, fh, delimiter: str, column: str | None, chunk: int, *, native: bool = False) -> Source:
    """``native``: ``path`` is a regular file, which Arrow reads itself (after ``fh`` gave the head to sniff):
    Arrow's read-ahead thread then never calls into a Python file object, which aborted the process (-6) when
    the first block failed to parse. Standard input goes through ``fh``."""
    raw = _head(fh)
    head = raw.removeprefix(BOM)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not only a character cut at the end of the sample
            raise not_utf8(path, e, data=head) from None
        text = head[: e.start].decode("utf-8")
    delimiter = _sniff(text, delimiter)
    header, width = _csv_header(path, text, delimiter, column)
    names = header or [f"column_{i}" for i in range(width)]
    col = resolve_column(path, names, column)
    try:
        if native:
            fh.close()
        reader = pacsv.open_csv(
            pa.OSFile(path) if native else io.BufferedReader(_Replay(head, fh), TEXT_BLOCK_BYTES),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if header else 0, block_size=TEXT_BLOCK_BYTES, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError) as e:
        raise unreadable(path, e) from None
    return Source(
        path,
        "tsv" if delimiter == "\t" else "csv",
        col,
        names,
        _numbered(_batches(path, reader), 2 if header else 1),
        has_line=True,
        delimiter=delimiter,
        headerless=header is None,
    )


def _numbered(batches: Iterator[pa.RecordBatch], first: int) -> Iterator[pa.RecordBatch]:
    """Each batch with a leading ``line`` column: the record's line, counting from ``first``."""
    for batch in batches:
        yield pa.RecordBatch.from_arrays(
            [pa.array(np.arange(first, first + batch.num_rows, dtype=np.int64)), *batch.columns],
            names=["line", *batch.schema.names],
        )
        first += batch.num_rows


def _batches(path: str, reader) -> Iterator[pa.RecordBatch]:
    """The reader's batches, with Arrow's errors as :class:`DataError` naming the file."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
            _close(reader)
            raise unreadable(path, e) from None
        yield batch


#: Streaming readers that failed in this process (see :func:`_close`; the command line ends without the
#: interpreter's exit after one: ``nameorigin.cli.main``).
failed_readers: list = []


def _close(reader) -> None:
    """Close a streaming reader that failed and remember it: its read-ahead thread may still be reading the
    Python file object, and at the interpreter's exit that aborted the process (-6) after the error was printed."""
    failed_readers.append(reader)
    with suppress(Exception):  # closing after a failure must not hide the failure
        reader.close()


#: How standard input (``--input -``) is named in messages.
STDIN = "standard input"


def open_source(
    path: str,
    *,
    fmt: str | None = None,
    column: str | None = None,
    keep: bool = False,
    chunk: int = CHUNK_ROWS,
    stream=None,
) -> Source:
    """Open ``path`` as record batches of ``chunk`` rows (Parquet, CSV, TSV, JSON lines, or text with one name
    a line). ``path`` ``"-"`` reads ``stream`` (a binary file object; default: standard input) in ``fmt``
    (default: text). Raises :class:`DataError` for a file that is missing, unreadable, empty, or lacks the
    column, and :class:`ColumnError` when the column holds something other than strings."""
    if path == "-":
        fmt, where = fmt or "txt", STDIN
        if fmt == "parquet":
            raise DataError(
                "--input -: Parquet cannot be read from standard input (it is read from its end); give the file's path"
            )
        fh = _Replay(b"", stream if stream is not None else sys.stdin.buffer, own=False)
    else:
        if Path(path).is_dir():
            raise DataError(f"{path}: is a folder, not a file (--input reads one file; - reads standard input)")
        fmt, where = format_of(path, fmt), path
        if not Path(path).is_file():
            raise DataError(f"{path}: no such file")
        fh = None if fmt == "parquet" else open(path, "rb")  # noqa: SIM115 (the Source owns it)
    if fmt == "txt":
        col = resolve_column(where, ["name"], column)
        source = Source(where, fmt, col, ["name"], _read_text(where, fh), has_line=True)
    elif fmt in ("csv", "tsv"):
        source = _read_csv(where, fh, "," if fmt == "csv" else "\t", column, chunk, native=path != "-")
    elif fmt == "parquet":
        try:
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
        except (pa.ArrowInvalid, OSError) as e:
            raise unreadable(path, e) from None
        col = resolve_column(path, schema.names, column)
        string_array(pa.array([], schema.field(col).type), col, path)
        source = Source(
            path,
            fmt,
            col,
            schema.names,
            _batches(path, _ParquetReader(pf, chunk, None if keep else [col])),
            rows=pf.metadata.num_rows,
        )
    else:
        raw = _head(fh)
        if not raw.strip():
            raise DataError(f"{where}: is empty (no names)")
        head = raw.removeprefix(BOM)
        first = next((line for line in head.split(b"\n") if line.strip()), b"")
        try:  # the first row checked here: a parse error inside Arrow's reader can abort the process at exit
            json.loads(first)
        except ValueError as e:
            raise unreadable(where, ValueError(f"JSON parse error in row 1: {e}")) from None
        try:
            native = path != "-" and not raw.startswith(BOM)  # Arrow reads the file itself (see _read_csv)
            if native:
                fh.close()
            reader = pajson.open_json(
                pa.OSFile(path) if native else io.BufferedReader(_Replay(head, fh), TEXT_BLOCK_BYTES),
                # threads over a Python stream abort the process when a parse fails
                read_options=pajson.ReadOptions(block_size=TEXT_BLOCK_BYTES, use_threads=False),
            )
        except (pa.ArrowInvalid, OSError) as e:
            raise unreadable(where, e) from None
        col = resolve_column(where, reader.schema.names, column)
        string_array(pa.array([], reader.schema.field(col).type), col, where)
        source = Source(where, fmt, col, reader.schema.names, _batches(where, reader))
    return source


class _ParquetReader:
    """``read_next_batch`` over a Parquet file's batches, like Arrow's CSV and JSON readers."""

    def __init__(self, pf: pq.ParquetFile, chunk: int, columns: list[str] | None):
        self.it = pf.iter_batches(batch_size=chunk, columns=columns)

    def read_next_batch(self) -> pa.RecordBatch:
        return next(self.it)


# ------------------------------------------------------------------------------------------- writers

#: What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection): =, +, -, @, tab, CR.
FORMULA_START = r"^[=+\-@\t\r]"


#: The bytes :data:`FORMULA_START` names (all ASCII: a UTF-8 string starts with one exactly when its first
#: character is one).
_FORMULA_BYTES = np.frombuffer(b"=+-@\t\r", dtype=np.uint8)


def _formula_rows(column: pa.ChunkedArray) -> np.ndarray:
    """Whether each cell of a string column starts as :data:`FORMULA_START` says, read from the Arrow buffers
    (each cell's first byte, by its offset): the check every text cell of every output row goes through, about
    seven times faster than the regular expression, which then does the guarding."""
    out = []
    for chunk in column.chunks:
        n = len(chunk)
        _, offsets, data = chunk.buffers()
        wide = pa.types.is_large_string(chunk.type)
        starts = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32)[chunk.offset : chunk.offset + n + 1]
        nonempty = starts[1:] > starts[:-1]
        if chunk.null_count:
            nonempty &= np.asarray(chunk.is_valid())
        hit = np.zeros(n, dtype=bool)
        if data is not None and nonempty.any():
            first = np.frombuffer(data, dtype=np.uint8)[starts[:-1][nonempty]]
            hit[nonempty] = np.isin(first, _FORMULA_BYTES)
        out.append(hit)
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """Every text cell (in every column, kept input columns included) that a spreadsheet would run as a formula
    (:data:`FORMULA_START`) gets a leading ``'``, as OWASP advises for CSV injection: ``=HYPERLINK(...)`` is
    written ``'=HYPERLINK(...)``. Vectorised over each column; numbers and nulls are left as they are."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type) and pa.types.is_string(f.type.value_type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
        elif not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)):
            continue
        column = table.column(i)
        if not _formula_rows(column).any():  # the common case: one look at each first byte, nothing to guard
            continue
        formula = pc.match_substring_regex(column, FORMULA_START)
        guarded = pc.binary_join_element_wise(pa.scalar("'", column.type), column, pa.scalar("", column.type))
        table = table.set_column(i, f.name, pc.if_else(formula, guarded, column))
    return table


class Writer:
    """Writes prediction tables as Parquet, CSV, TSV (also for ``.txt``), flat JSON lines, or ``json``: the
    nested JSON lines of ``nameorigin predict --json`` (``{"line", "name", "predictions": [...], "error"}``).
    CSV and TSV cells that a spreadsheet would run as formulas are neutralised (:func:`neutralise_formulas`)
    unless ``formulas`` is True."""

    def __init__(self, sink, fmt: str, *, formulas: bool = False):
        self.sink, self.fmt, self.writer, self.formulas = sink, fmt, None, formulas

    def write(self, table: pa.Table) -> None:
        if self.fmt in ("csv", "tsv", "txt"):
            table = _rounded(table)
            if not self.formulas:
                table = neutralise_formulas(table)
            if self.writer is None:
                options = pacsv.WriteOptions(delimiter="," if self.fmt == "csv" else "\t", quoting_style="needed")
                self.writer = pacsv.CSVWriter(self.sink, table.schema, write_options=options)
            self.writer.write_table(table)
        elif self.fmt == "parquet":
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.sink, table.schema)
            self.writer.write_table(table)
        elif self.fmt == "jsonl":
            self.sink.write(
                "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist()).encode("utf-8")
            )
        elif self.fmt == "json":
            self.sink.write("".join(json.dumps(_nested(row)) + "\n" for row in table.to_pylist()).encode("utf-8"))
        else:
            raise DataError(f"unknown output format {self.fmt!r}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _rounded(table: pa.Table) -> pa.Table:
    """For the text formats: probabilities to 6 decimals, ``out_of_scope`` to 4, ``set`` joined by ``|``."""
    for i, name in enumerate(table.column_names):
        if name.startswith("probability_") or "_probability_" in name or name == "out_of_scope":
            digits = 4 if name == "out_of_scope" else 6
            table = table.set_column(i, name, pc.round(table.column(i).cast(pa.float64()), digits))
        elif name == "set":
            table = table.set_column(i, name, pc.binary_join(table.column(i), "|"))
    return table


#: The keys of :meth:`Prediction.to_dict` that the nested JSON lines always carry (after ``predictions``).
_TRUST_KEYS = ("out_of_scope", "abstained", "reason")


def _nested(row: dict) -> dict:
    """A flat output row as ``{"line", "name", "predictions": [...], "out_of_scope", "abstained", "reason"[,
    "set"][, "error"]}``: the keys of :meth:`Prediction.to_dict` (and any kept input columns)."""
    ranked, out = [], {}
    k = sum(1 for key in row if key.startswith("language_"))
    split = set(part_column_names(k)) if "parts_used" in row else set()
    for key, value in row.items():
        if key in split:
            continue
        if key.startswith("language_"):
            if value is not None:
                ranked.append({"language": value, "probability": row["probability_" + key[9:]]})
        elif not key.startswith("probability_") and key not in ("error", "set", *_TRUST_KEYS):
            out[key] = value
    out["predictions"] = ranked
    out.update({key: row.get(key) for key in _TRUST_KEYS})
    out["abstained"] = bool(out["abstained"])
    if row.get("set") is not None:
        out["set"] = row["set"]
    if split:  # a full or first name: its kind, its reading and its parts, as Prediction.to_dict has them
        out.update(parts_of_row({key: [row[key]] for key in split}, 0, k))
    if row.get("error"):
        out["error"] = row["error"]
    return out


# ------------------------------------------------------------------------------------------- streaming


@dataclass
class Summary:
    names: int = 0
    errors: int = 0
    abstained: int | None = None  # None when the output has no ``abstained`` column
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.names / self.seconds if self.seconds > 0 else 0.0
        parts = [f"{self.names:,} names", f"{self.errors:,} errors"]
        if self.abstained is not None:
            parts.append(f"{self.abstained:,} abstained")
        return ", ".join(parts) + f", {self.seconds:.2f} s ({rate:,.0f} names/s)"


@dataclass
class FileJob:
    """What ``nameorigin predict --input`` does with one file."""

    input: str
    output: str | None = None  # None or "-": stdout
    column: str | None = None
    top: int = 3
    keep_columns: bool = False
    input_format: str | None = None
    output_format: str | None = None
    chunk: int = CHUNK_ROWS
    trust: dict = field(default_factory=dict)
    keep_formulas: bool = False  # CSV/TSV: write cells that begin as formulas (=, +, -, @) without a leading '
    stream: object = None  # input "-": the binary stream to read (default: standard input)
    name_type: str = DEFAULT_NAME_TYPE  # auto | surname | first | full (see nameorigin.fullname)
    first_column: str | None = None  # a column of first names (header or 0-based index)
    last_column: str | None = None  # a column of last names

    @property
    def split(self) -> bool:
        """Whether the names are read as full or first names (parts columns in the output)."""
        return self.name_type != "surname" or self.first_column is not None or self.last_column is not None


def predict_batches(predictor: Predictor, source: Source, job: FileJob) -> Iterator[pa.Table]:
    """Output tables, one per input batch: [``line``], the input's columns (with ``keep_columns``) or ``name``,
    the predictions and ``error``."""
    skip = 1 if source.has_line else 0  # a text format's batches start with ``line``
    part_columns = _part_columns(source, job)
    for batch in _sliced(source.batches, job.chunk):
        own = batch.schema.names[skip:]  # the input's columns (duplicate names allowed): by position
        if job.split:
            cells = _part_cells(batch, skip, part_columns, source.path)
            preds = predictor.predict_columns(cells.pop("name"), job.top, name_type=job.name_type, **cells, **job.trust)
        else:
            names = _cells(batch, skip, source.column, source.path)
            preds = predictor.predict_columns(names, job.top, name_type="surname", **job.trust)
        front: dict[str, pa.Array] = {"line": batch.column(0)} if skip else {}
        if job.keep_columns:
            for i, name in enumerate(own):
                if name in front or name in preds.column_names[1:]:
                    raise ColumnError(
                        f"{source.path}: its column {name!r} would clash with an output column; "
                        "rename it or leave out --keep-columns"
                    )
                front[name] = batch.column(skip + i)
            preds = preds.drop_columns(["name"])
        yield pa.Table.from_pydict({**front, **{n: preds.column(n) for n in preds.column_names}})


def _open_job(job: FileJob) -> Source:
    """The job's input, open with its columns chosen (all kept when first or last columns are read)."""
    return open_source(
        job.input,
        fmt=job.input_format,
        column=_header_hint(job),
        keep=job.keep_columns or job.first_column is not None or job.last_column is not None,
        chunk=job.chunk,
        stream=job.stream,
    )


def _header_hint(job: FileJob) -> str | None:
    """The column to open the input by: one given by its header name tells a CSV's header row apart."""
    given = [c for c in (job.column, job.last_column, job.first_column) if c is not None]
    return next((c for c in given if not c.isdigit()), given[0] if given else None)


def _cells(batch: pa.RecordBatch, skip: int, column: str | None, path: str) -> pa.Array | None:
    """A batch's column of names by its name (the first of that name), as strings; None for no column."""
    if column is None:
        return None
    return string_array(batch.column(skip + batch.schema.names[skip:].index(column)), column, path)


def _part_cells(batch: pa.RecordBatch, skip: int, part_columns: dict, path: str) -> dict[str, pa.Array | None]:
    """A batch's cells of each of :func:`_part_columns`' columns (``name``, ``first_names``, ``last_names``)."""
    return {k: _cells(batch, skip, c, path) for k, c in part_columns.items()}


def _part_columns(source: Source, job: FileJob) -> dict[str, str | None]:
    """The input's columns that hold the name (None: none read), the first names and the last names; a
    ``--first-column``/``--last-column`` the input lacks is a :class:`ColumnError` naming it."""
    first = resolve_column(source.path, source.columns, job.first_column) if job.first_column is not None else None
    last = resolve_column(source.path, source.columns, job.last_column) if job.last_column is not None else None
    name = source.column if (first is None and last is None) or job.column is not None else None
    return {"name": name, "first_names": first, "last_names": last}


def _sliced(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``rows`` rows (readers cut text files by bytes), so memory stays bounded."""
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def predict_file(
    predictor: Predictor,
    job: FileJob,
    *,
    progress: Callable[[int], None] | None = None,
    stdout=None,
    opened: Callable[[Source], None] | None = None,
) -> Summary:
    """Stream ``job.input`` through the predictor into ``job.output`` (atomically), batch by batch, with flat
    memory. ``opened`` is called with the input once it is open (its column chosen). Returns the summary
    (names, errors, abstained, seconds)."""
    start = time.perf_counter()
    source = _open_job(job)
    _part_columns(source, job)  # a missing --first-column/--last-column stops here, before any output
    if opened:
        opened(source)
    to_stdout = not job.output or job.output == "-"
    out_fmt = job.output_format or ("csv" if to_stdout else format_of(job.output, flag="--output-format"))
    if to_stdout and out_fmt == "parquet":
        raise DataError("Parquet output needs --output FILE (it cannot go to stdout)")
    summary = Summary()
    with _stdout_sink(stdout) if to_stdout else _atomic_sink(job.output, inputs=[job.input]) as sink:
        writer = Writer(sink, out_fmt, formulas=job.keep_formulas)
        for table in predict_batches(predictor, source, job):
            writer.write(table)
            summary.names += table.num_rows
            summary.errors += table.num_rows - table.column("error").null_count
            if "abstained" in table.column_names:
                summary.abstained = (summary.abstained or 0) + int(pc.sum(table.column("abstained")).as_py() or 0)
            if progress:
                progress(table.num_rows)
        if summary.names == 0:
            raise DataError(f"{source.path}: has no names (is it empty?)")
        writer.close()
    summary.seconds = time.perf_counter() - start
    return summary


@contextmanager
def _atomic_sink(path: str, *, inputs=()):
    """A binary file written atomically (:func:`nameorigin.atomic.atomic_path`; never one of ``inputs``)."""
    with atomic_path(path, inputs=inputs) as tmp, open(tmp, "wb") as fh:
        yield fh


def file_prior(predictor: Predictor, job: FileJob) -> tuple[dict[str, float] | None, int]:
    """``prior="auto"`` for a file: the language mix of all its names, in a first pass over it, and how many
    distinct names the estimate rests on. Full names (``job.split``): each name (or pair of cells) split and
    answered as the second pass will answer it, EM on those answers."""
    if job.split:
        source = _open_job(job)
        skip = 1 if source.has_line else 0
        part_columns = _part_columns(source, job)

        def cells(batch):
            got = _part_cells(batch, skip, part_columns, source.path)
            return got["name"], got["first_names"], got["last_names"]

        return predictor._estimate_prior_parts(
            (cells(batch) for batch in _sliced(source.batches, job.chunk)),
            job.name_type,
            max_out_of_scope=job.trust.get("max_out_of_scope"),
        )
    source = open_source(job.input, fmt=job.input_format, column=job.column, chunk=job.chunk, stream=job.stream)
    skip = 1 if source.has_line else 0
    return predictor._estimate_prior_batches(
        string_array(batch.column(skip + batch.schema.names[skip:].index(source.column)), source.column, source.path)
        for batch in _sliced(source.batches, job.chunk)
    )


@contextmanager
def _stdout_sink(stream=None):
    stream = stream or sys.stdout
    stream.flush()
    sink = getattr(stream, "buffer", None)
    if sink is None:  # a text stream without bytes underneath (e.g. captured): encode into it
        buf = io.BytesIO()
        yield buf
        stream.write(buf.getvalue().decode("utf-8"))
    else:
        yield sink
        sink.flush()
