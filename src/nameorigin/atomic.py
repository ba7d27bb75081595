"""Writing files atomically: a hidden temporary file beside the target, renamed into place only when complete.

A run killed midway (even by SIGKILL) leaves no target behind, only a temporary file whose name says what it
was, ``.NAME.partial-XXXXXXXX``; the next write into that folder removes stale ones of the same target.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PARTIAL = ".partial-"


def default_file_mode() -> int:
    """0o666 less the process's umask: what a plain ``open(..., "w")`` would give (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def partial_prefix(target: Path) -> str:
    """The name a partial file (or folder) of ``target`` starts with: ``.NAME.partial-``."""
    return f".{target.name}{PARTIAL}"


def remove_stale(target: Path) -> int:
    """Remove ``.TARGET.partial-*`` files (and folders: a cluster run's parts) that a killed run left beside
    ``target``; returns how many."""
    removed = 0
    for stale in target.parent.glob(f"{partial_prefix(target)}*"):
        try:
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed += 1
        except OSError:  # another run's file that just went away, or not ours to remove
            continue
    if removed:
        log.info("removed %d stale partial file(s) of %s", removed, target)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its parent folders are created); rename it onto ``path`` when
    the block ends normally, delete it when the block raises. The file gets the umask's usual mode."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=partial_prefix(target))
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, default_file_mode())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_text(path: str | os.PathLike) -> Iterator:
    """A text stream (UTF-8, ``newline=""``) onto a file written atomically, as :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        yield fh
