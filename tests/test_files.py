"""Files dbops writes: 0600 from the start, folders 0700, atomic replace, clean failures."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dbops.config_files import write_profile
from dbops.errors import UsageError
from dbops.files import FileWriteError, append_private, private_dir, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """The most permissive umask: modes must come from dbops, not from the umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_new_files_and_folders_are_private(tmp_path: Path, open_umask: None) -> None:
    target = tmp_path / "a" / "b" / "export.jsonl"
    with write_private(target) as stream:
        stream.write("x\n")
    assert mode(target) == 0o600
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    log = tmp_path / "logs" / "action-log.jsonl"
    append_private(log, "one\n")
    append_private(log, "two\n")
    assert log.read_text() == "one\ntwo\n" and mode(log) == 0o600
    assert mode(private_dir(tmp_path / "c")) == 0o700


def test_force_replaces_a_world_readable_file_atomically(tmp_path: Path, open_umask) -> None:
    target = tmp_path / "export.jsonl"
    target.write_text("old\n")
    target.chmod(0o644)
    with pytest.raises(UsageError, match="already exists"), write_private(target):
        pass
    with write_private(target, overwrite=True) as stream:
        stream.write("new\n")
        assert target.read_text() == "old\n"  # readers see the old file until the rename
    assert target.read_text() == "new\n" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["export.jsonl"]


def test_an_error_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "export.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), write_private(target, overwrite=True) as stream:
        stream.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["export.jsonl"]


def test_profiles_are_written_private(tmp_path: Path, open_umask) -> None:
    path = write_profile("p", {"aws_region": "eu-west-1"}, tmp_path / "cfg" / "config.toml")
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_a_full_disk_is_one_line_exit_6_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """A file-size limit makes writes fail (EFBIG) like a full disk would."""
    target = tmp_path / "backup.jsonl"
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from dbops.files import FileWriteError, write_private
        try:
            with write_private(__import__("pathlib").Path({str(target)!r})) as s:
                for _ in range(1000):
                    s.write("x" * 100 + "\\n")
        except FileWriteError as exc:
            print(exc.exit_code.value, exc.one_line())
            sys.exit(0)
        sys.exit(1)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code, line = done.stdout.strip().split(" ", 1)
    assert code == "6" and str(target) in line and "File too large" in line
    assert list(tmp_path.iterdir()) == []
    assert issubclass(FileWriteError, Exception)
