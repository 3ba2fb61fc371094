"""Every file dbops writes: owner-only, complete or absent, and a clear error when it fails.

Files hold personal data (exports, backups) or secrets (profiles), so they are created
with mode 0600 by `os.open` itself (never chmod after: there would be a moment with the
umask's mode) and their folders with 0700. A file replaced with `--force` is written to a
temporary file in the same folder, fsynced and renamed over the old one, so a reader sees
the old file or the new one, never half of either. A write failure (ENOSPC, EIO, EACCES,
EFBIG, fsync included) removes the partial file and raises `FileWriteError` (exit 6: the
operation stops before anything destructive happens) naming the file and the OS error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dbops.errors import RefusedError, UsageError

FILE_MODE = 0o600
DIR_MODE = 0o700


class FileWriteError(RefusedError):
    """A file could not be written completely; nothing destructive was done after it."""


# A path that cannot name a file (a parent is a file, a name too long, a folder where the
# file should be): the operator's input is wrong (exit 2), not the machine (exit 6).
_BAD_PATH = {errno.ENOTDIR, errno.ENAMETOOLONG, errno.EISDIR, errno.ELOOP}


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else f"{text[:100]}...{text[-60:]} ({len(text)} chars)"


def _failure(path: Path, exc: OSError) -> FileWriteError | UsageError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _BAD_PATH:
        return UsageError(f"cannot write {_shown(path)}: {reason}", hint="choose another path")
    return FileWriteError(
        f"cannot write {_shown(path)}: {reason}",
        hint="free space or fix permissions, then re-run; nothing was deleted",
    )


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents with mode 0700 (existing ones are left as
    they are: they may be the user's own folders)."""
    missing: list[Path] = []
    current = path
    while not _exists(current, path):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise _failure(folder, exc) from None
    return path


def _exists(candidate: Path, target: Path) -> bool:
    try:
        return candidate.exists()
    except OSError as exc:
        raise _failure(target, exc) from None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sync(stream: IO[str]) -> None:
    """Flush and fsync; a failure is an error (data the OS could not keep is not kept)."""
    stream.flush()
    os.fsync(stream.fileno())


@contextlib.contextmanager
def write_private(path: Path, *, overwrite: bool = False) -> Iterator[IO[str]]:
    """Write `path` (0600) completely or not at all.

    The content goes to a temporary file beside it, fsynced and renamed into place when
    the block ends without error; on any error the temporary file is removed and an
    existing `path` is left untouched. Without `overwrite` an existing file is refused
    (exit 2).
    """
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # a name too long, a loop of links
        raise _failure(path, exc) from None
    if is_dir:
        raise UsageError(f"{_shown(path)} is a folder", hint="give a file name")
    if exists and not overwrite:
        raise UsageError(
            f"{_shown(path)} already exists", hint="choose another name, or pass --force"
        )
    private_dir(path.parent)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError as exc:
        raise _failure(path, exc) from None
    stream = os.fdopen(fd, "w", encoding="utf-8")
    try:
        try:
            yield stream
            sync(stream)
        finally:
            with contextlib.suppress(OSError):
                stream.close()
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise _failure(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def append_private(path: Path, text: str) -> None:
    """Append `text` to `path` (created 0600), fsynced."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            data = text.encode("utf-8")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _failure(path, exc) from None


def write_text_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text` (0600)."""
    with write_private(path, overwrite=True) as stream:
        stream.write(text)
