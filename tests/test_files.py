"""``files``: checksums, atomic writes and checksummed saves, each checked against an independent
computation (hashlib, the bytes on disk) and the one-line errors a failed write gives."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest
import torch

from simpool_bench import files
from simpool_bench.errors import SimpoolBenchError


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sha256_file_reads_every_chunk(tmp_path):
    body = bytes(range(256)) * 5 + b"tail"
    (tmp_path / "f").write_bytes(body)
    assert files.sha256_file(tmp_path / "f", chunk_size=7) == hashlib.sha256(body).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert files.sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_temp_names_are_fresh_and_beside_the_target(tmp_path):
    target = tmp_path / "results.csv"
    a, b = files.temp_path(target), files.temp_path(target)
    assert a != b and a.parent == b.parent == tmp_path
    name, pid, rand, ext = a.name.rsplit(".", 3)
    assert (name, pid, ext) == ("results.csv", str(os.getpid()), "tmp") and len(rand) == 8
    assert files.checksum_path(tmp_path / "shard_000003.pt") == tmp_path / "shard_000003.sha256"


def test_atomic_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    assert files.atomic_write(target, b"first") == target
    files.atomic_write(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"second" and _leftovers(target.parent) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")

    def disk_full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(SimpoolBenchError) as err:
        files.atomic_write(target, disk_full)
    assert str(err.value) == f"cannot write {target}: {os.strerror(errno.ENOSPC)}"
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, interrupted)
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_a_failed_rename_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken").mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(SimpoolBenchError, match=f"^cannot write {tmp_path / 'taken'}: "):
        files.atomic_write(tmp_path / "taken", b"x")
    assert _leftovers(tmp_path) == [] and (tmp_path / "taken").is_dir()


def test_a_folder_under_a_file_is_one_error(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("")
    under = tmp_path / "f" / "out"
    not_a_dir = os.strerror(errno.ENOTDIR)
    with pytest.raises(SimpoolBenchError, match=f"^cannot create folder {under}: {not_a_dir}$"):
        files.check_makeable(under)
    with pytest.raises(SimpoolBenchError, match=f"^cannot create folder {tmp_path / 'f'}: {not_a_dir}$"):
        files.make_dir(tmp_path / "f")
    files.check_makeable(tmp_path / "new" / "deeper")  # nothing there yet: fine, and nothing made
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(files.os, "access", lambda *a: False)  # a folder we may not write in (root may write anywhere)
    with pytest.raises(SimpoolBenchError, match=f"^cannot create folder {tmp_path / 'new'}: "):
        files.check_makeable(tmp_path / "new")


def test_os_reason_is_the_reason_without_the_file_name():
    assert files.os_reason(OSError(errno.ENOSPC, "No space left on device", "/x/y")) == "No space left on device"
    assert files.os_reason(OSError("plain words")) == "plain words"
    assert files.os_reason(OSError()) == "OSError"


def test_read_toml_errors_name_the_file(tmp_path):
    with pytest.raises(SimpoolBenchError, match=f"^suite file not found: {tmp_path / 'no.toml'}$"):
        files.read_toml(tmp_path / "no.toml", "suite file")
    (tmp_path / "latin1.toml").write_bytes(b'a = "caf\xe9"\n')
    with pytest.raises(SimpoolBenchError, match=r"latin1\.toml: not UTF-8 text \(byte 8: b'\\xe9\"\\n'\)"):
        files.read_toml(tmp_path / "latin1.toml", "suite file")
    (tmp_path / "ok.toml").write_text('a = 1\n[b]\nc = "d"\n')
    assert files.read_toml(tmp_path / "ok.toml", "suite file") == {"a": 1, "b": {"c": "d"}}


def test_checksummed_round_trip_and_what_is_rejected(tmp_path):
    path = tmp_path / "shard_000000.pt"
    files.save_checksummed(path, {"x": torch.arange(3)})
    assert (tmp_path / "shard_000000.sha256").read_text() == hashlib.sha256(path.read_bytes()).hexdigest() + "\n"
    status, payload = files.load_checksummed(path)
    assert status == "ok" and payload["x"].tolist() == [0, 1, 2]

    (tmp_path / "shard_000000.sha256").unlink()
    assert files.load_checksummed(path) == ("missing", None)
    junk = b"not a torch file"  # its checksum right, its content unreadable
    path.write_bytes(junk)
    (tmp_path / "shard_000000.sha256").write_text(hashlib.sha256(junk).hexdigest())
    assert files.load_checksummed(path) == ("corrupt", None)


def test_an_interrupted_save_is_rejected_not_read_as_the_old_shard(tmp_path, monkeypatch):
    path = tmp_path / "shard_000000.pt"
    files.save_checksummed(path, {"x": torch.zeros(2)})

    def fail(*args):
        raise SimpoolBenchError("disk full")

    monkeypatch.setattr(files, "atomic_write", fail)
    with pytest.raises(SimpoolBenchError, match="disk full"):
        files.save_checksummed(path, {"x": torch.ones(2)})
    assert files.load_checksummed(path) == ("missing", None)


def test_a_damaged_checksum_file_is_corrupt_not_a_traceback(tmp_path):
    """A ``.sha256`` of bytes that are no text (a damaged disk block) is a shard to recompute; it
    was a UnicodeDecodeError out of a resumed run."""
    path = tmp_path / "shard_000000.pt"
    files.save_checksummed(path, {"x": torch.zeros(1)})
    (tmp_path / "shard_000000.sha256").write_bytes(b"\xff\xfe\x00" + b"0" * 61)
    assert files.load_checksummed(path) == ("corrupt", None)


def test_a_write_is_on_disk_before_it_takes_the_name(tmp_path, monkeypatch):
    """The temporary file is flushed and fsync'ed whole before os.replace gives it the name: a crash
    after the rename must not leave an empty or short file where a complete one was."""
    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_size))  # what the kernel has of the file at that point
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.atomic_write(tmp_path / "a.bin", b"x" * 70001)
    files.atomic_write(tmp_path / "b.bin", lambda f: f.write(b"y" * 12345))
    assert events == [("fsync", 70001), ("replace", "a.bin"), ("fsync", 12345), ("replace", "b.bin")]
