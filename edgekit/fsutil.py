"""Atomic file and folder writes: nothing half-written ever sits under a final name.

Only a regular file (or a name not there yet) is replaced by a rename. A symlink is followed and its
target is written (the link stays a link); a character device, FIFO or socket (``/dev/null``,
``/dev/stdout`` on a pipe) is written through, never replaced (issue 25: ``--json /dev/null`` as root
replaced the machine's /dev/null with a regular file).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator


def _special(path: Path) -> os.stat_result | None:
    """The stat of ``path`` when it exists and is neither a regular file nor a folder."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return None if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) else st


def _cant(final: Path, e: OSError):
    from .errors import ConfigError

    why = e.strerror or type(e).__name__
    if e.errno == errno.ENXIO:
        why = "it is a FIFO with no reader"
    return ConfigError(f"can't write {str(final)!r}: {why}")


def resolve_target(final: str | os.PathLike) -> Path:
    """Where a write to ``final`` lands: the end of its symlink chain (the link itself is kept)."""
    final = Path(final)
    return Path(os.path.realpath(final)) if final.is_symlink() else final


def check_writable(final: str | os.PathLike, *, is_dir: bool = False) -> None:
    """Raise ConfigError now, before any work, when ``final`` can't be written (a folder under /proc or
    /sys, a read-only file system, a FIFO nobody reads, a device where a folder is asked): checked by
    making and removing a temporary file in the nearest existing folder above it."""
    from .errors import ConfigError

    if _special(Path(final)) is not None:  # written through; opening a FIFO now would hand its reader an EOF
        if is_dir:
            raise ConfigError(f"can't make folder {str(final)!r}: it is a special file, not a folder")
        return
    here = resolve_target(final).parent
    while not here.exists():
        here = here.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgekit-probe.", dir=here)
    except OSError as e:
        raise _cant(Path(final), e) from None
    os.close(fd)
    os.unlink(probe)


def _open_special(target: Path, final: Path):
    """Open a device/FIFO for writing without blocking on a FIFO that has no reader."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise _cant(final, e) from None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it to ``final``, on any error remove it.

    The temporary name is in the same folder so the rename is atomic on POSIX. A symlink ``final`` is
    followed (its target is replaced, the link kept); a special file is written through, not replaced.
    """
    final = Path(final)
    special = _special(final)  # follows links, /dev/stdout -> /proc/self/fd/1 -> pipe:[...] included
    target = final if special is not None else resolve_target(final)
    if special is not None and is_dir:
        from .errors import ConfigError

        raise ConfigError(f"can't make folder {str(final)!r}: it is a special file, not a folder")
    if special is not None:  # stage in a private temp folder, then copy through
        tmpdir = Path(tempfile.mkdtemp(prefix=".edgekit-"))
        tmp_path = tmpdir / target.name
        try:
            yield tmp_path
            with open(tmp_path, "rb") as src, _open_special(target, final) as dst:
                shutil.copyfileobj(src, dst)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as e:
        raise _cant(final, e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    if is_dir:
        tmp_path.unlink()
    else:  # mkstemp makes 0600; a model or report should get the usual umask permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        if is_dir and target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp_path, target)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()
        raise


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, in a user's words ("a FIFO", "a device", ...)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_text_bounded(path: str | os.PathLike, limit: int, what: str, hint: str) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes. Anything else is a ConfigError saying
    ``"{what} {path} is ...; {hint}"`` before a byte is read: opening a FIFO waits for a writer for ever, and
    /dev/zero (or a link to it) never ends. Undecodable bytes raise UnicodeDecodeError for the caller to word."""
    from .errors import ConfigError

    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as e:
        raise ConfigError(f"Can't read {what.lower()} {p}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {p} is {kind_of(st.st_mode)}; {hint}")
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ConfigError(f"Can't read {what.lower()} {p}: {e.strerror or e}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {p} is over {limit // 1024} KiB ({st.st_size:,} bytes); {hint}")
    return data.decode("utf-8")


def owned_partial(folder: Path, stem: str) -> Path:
    """A temporary folder ``.{stem}.{pid}.XXXX.partial`` in ``folder``, after removing those an earlier,
    interrupted process left there (its pid is gone), so they don't pile up across re-runs."""
    for old in folder.glob(f".{glob_escape(stem)}.*.partial"):
        pid = old.name[len(stem) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{stem}.{os.getpid()}.", suffix=".partial", dir=folder))


def glob_escape(s: str) -> str:
    import glob

    return glob.escape(s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
