"""Writing files atomically: a hidden temporary file beside the target, renamed into place only when complete.

A run killed midway (even by SIGKILL) leaves no target behind, only a temporary file whose name says what it
was, ``.NAME.partial-XXXXXXXX``. A writer holds a lock on its partial file while it writes (the system drops it
when the process ends, however it ends), so the next write into that folder removes every partial file that no
live process holds, and only those. Two runs writing the same target at once are kept apart by a lock file,
``.NAME.lock``, held for the whole write: the second is refused with :class:`OutputError` naming the first.

A target that is a symbolic link is written through to the file it points at (atomically, beside that file); a
target that is a FIFO, a device, a socket or a folder is refused, as is one whose folder cannot be made.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; files are still written atomically
    fcntl = None

log = logging.getLogger(__name__)

PARTIAL = ".partial-"
LOCK = ".lock"

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(mode: int, *, folder: str = "a folder") -> str | None:
    """What a file that is not a regular file is, in words (``folder``: how a directory is called); None for a
    regular file. Output paths and checkpoint paths are refused alike with it."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return folder
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


class OutputError(ValueError):
    """An output path that cannot or must not be written (a special file, the input itself, a path under a file,
    a target another run is writing); the message names the path."""


def default_file_mode() -> int:
    """0o666 less the process's umask: what a plain ``open(..., "w")`` would give (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def partial_prefix(target: Path) -> str:
    """The name a partial file (or folder) of ``target`` starts with: ``.NAME.partial-``."""
    return f".{target.name}{PARTIAL}"


def _try_lock(fd: int) -> bool:
    """An exclusive lock on ``fd`` without waiting: False when another open file holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _unheld(path: Path) -> bool:
    """Whether no live process holds a lock on the file ``path`` (a killed writer's lock is gone with it)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)


def remove_stale(target: Path) -> int:
    """Remove what killed runs left in ``target``'s folder: every ``.*.partial-*`` file that no live process holds
    (of any target), and ``target``'s own partial folders (a cluster run's parts); returns how many."""
    removed = 0
    try:
        candidates = list(target.parent.glob(f".*{PARTIAL}*"))
    except OSError:
        return 0
    own = partial_prefix(target)
    for stale in candidates:
        try:
            if stale.is_dir() and not stale.is_symlink():
                if not stale.name.startswith(own):
                    continue  # another target's staging folder: it may be a live run's
                shutil.rmtree(stale)
            elif stale.is_file() and _unheld(stale):
                stale.unlink()
            else:
                continue
            removed += 1
        except OSError:  # another run's file that just went away, or not ours to remove
            continue
    if removed:
        log.info("removed %d stale partial file(s) in %s", removed, target.parent)
    return removed


def resolve_target(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: ``path``, or what its symbolic link(s) point at. Raises
    :class:`OutputError` for a FIFO, a device, a socket or a folder, and for a path whose folder is a file."""
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        mode = None  # a parent is a file: said below
    except OSError as e:
        raise OutputError(f"{path}: cannot be written ({e.strerror})") from None
    kind = None if mode is None else special_kind(mode)
    if kind:
        raise OutputError(f"{path}: is {kind}; only regular files are written (by a rename into place)")
    for parent in target.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"{path}: cannot be written, {parent} is a file, not a folder")
            break
    return target


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (symbolic and hard links included; by resolved path when one of them does
    not exist yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_inputs(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """:class:`OutputError` when ``path`` is one of ``inputs`` (the same file: by resolved path, symbolic
    links and hard links included), since writing it would replace the input."""
    for source in inputs:
        if source is None or str(source) == "-":
            continue
        if same_file(path, source):
            raise OutputError(
                f"{path}: is the input {source}; writing it would replace the input, choose another output"
            )


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """What :func:`atomic_path` refuses before it writes (``inputs``, special files, a path under a file), said
    before any work is done; returns the file that will be replaced."""
    refuse_inputs(path, inputs)
    return resolve_target(path)


@contextmanager
def target_lock(target: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``target`` for the block, or raise :class:`OutputError` naming the process
    that holds it. The lock file is removed at the end."""
    if fcntl is None:
        yield
        return
    lock = target.parent / f".{target.name}{LOCK}"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        if not _try_lock(fd):
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            raise OutputError(
                f"{target}: another run{f' (process {holder})' if holder else ''} is writing it; "
                "wait for it to finish or choose another output"
            )
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break  # ours; otherwise its last holder removed it between our open and our lock: again
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        with suppress(OSError):
            os.unlink(lock)
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its parent folders are created); rename it onto ``path`` when
    the block ends normally, delete it when the block raises. The file gets the umask's usual mode. A symbolic
    link is written through to its target; special files, ``inputs`` and a target another run is writing raise
    :class:`OutputError` before anything is written."""
    target = check_output(path, inputs)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: its folder cannot be made ({e.strerror})") from None
    try:
        with target_lock(target):
            remove_stale(target)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=partial_prefix(target))
            try:
                _try_lock(fd)  # held until the rename: the next run's sweep leaves a live partial alone
                tmp_path = Path(tmp)
                try:
                    yield tmp_path
                    os.chmod(tmp_path, default_file_mode())
                    os.replace(tmp_path, target)
                except BaseException:
                    tmp_path.unlink(missing_ok=True)
                    raise
            finally:
                os.close(fd)
    except OutputError:
        raise
    except OSError as e:  # the folder refused the lock or the partial file (/sys, /proc, read-only, full)
        if e.filename and Path(e.filename).parent == target.parent:
            raise OutputError(f"{path}: cannot be written ({e.strerror})") from None
        raise


@contextmanager
def atomic_text(path: str | os.PathLike) -> Iterator:
    """A text stream (UTF-8, ``newline=""``) onto a file written atomically, as :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        yield fh
