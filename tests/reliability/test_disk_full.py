"""Disk full: a clear one-line error, the database intact, a re-run after freeing space succeeds.

Two ways to run out of space, both exercised when possible:

- ``tmpfs``: the database lives on a 64 MB tmpfs mounted for the test, filled with a ballast file
  until ~150 KB are left: writes fail with ENOSPC ("No space left on device"), exactly as on a full
  disk. Needs root and permission to mount (true in this sandbox and in a root CI container);
  skipped otherwise.
- ``rlimit``: ``RLIMIT_FSIZE`` set in the child (``resource.setrlimit``) to 150 KB above the
  database's current size: a write past it fails with EFBIG ("File too large") the same way (Python
  ignores SIGXFSZ, so the write returns an error instead of killing the process). Works anywhere,
  which is why it is kept alongside tmpfs.

In both, an ingest stops at the file it could not commit (files before it stay loaded, the rest are
not tried) and a build keeps the previous tables; after freeing space, ``ingest`` + ``build`` give
the same tables as the uninterrupted reference.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from tests.reliability.helpers import REPO, check_invariants, digests, env

MARGIN = 150_000


class Tmpfs:
    name = "tmpfs"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ballast = root / "ballast.bin"

    def fill(self) -> None:
        stat = os.statvfs(self.root)
        free = stat.f_bavail * stat.f_frsize
        with open(self.ballast, "ab") as handle:
            handle.write(b"\0" * max(free - MARGIN, 0))

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def preexec(self):
        return None


class Rlimit:
    name = "rlimit"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.limit: int | None = None

    def fill(self) -> None:
        self.limit = max(p.stat().st_size for p in self.root.iterdir() if p.is_file()) + MARGIN

    def free(self) -> None:
        self.limit = None

    def preexec(self):
        if self.limit is None:
            return None
        limit = self.limit
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.fixture(params=["tmpfs", "rlimit"])
def disk(request, tmp_path):
    if request.param == "rlimit":
        root = tmp_path / "disk"
        root.mkdir()
        yield Rlimit(root)
        return
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the rlimit variant covers this case)")
    root = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.decode().strip()}")
    try:
        yield Tmpfs(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


def _cli(disk, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=REPO,
                          env=env(), timeout=300, preexec_fn=disk.preexec())


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_disk_full_gives_a_clear_error_keeps_the_database_and_a_rerun_succeeds(disk, sim_files, reference_db):
    db_path = disk.root / "j.duckdb"
    files = list(map(str, sim_files))
    with Database(db_path) as db:
        assert [r.status for r in ingest_files(db, sim_files[:2])] == ["loaded", "loaded"]

    disk.fill()
    full = _cli(disk, "ingest", *files[2:], "--db", str(db_path))
    line = _one_line(full.stderr)
    assert full.returncode == 1
    assert ("No space left on device" in line or "File too large" in line) and "free space and run again" in line
    assert line.startswith(f"error: {disk.root}") or line.startswith("error: ") and "not loaded" in line
    build_full = _cli(disk, "build", "--db", str(db_path))
    assert build_full.returncode == 1
    assert "No space left on device" in _one_line(build_full.stderr) or "File too large" in build_full.stderr

    disk.free()
    counts = check_invariants(db_path)
    assert 2 <= counts["files"] < len(files)
    with Database(db_path) as db:  # the re-run (in-process: the same functions as the CLI)
        assert {r.status for r in ingest_files(db, sim_files)} == {"loaded", "already_loaded"}
        assert build(db, config.defaults()).mode == "full"
    check_invariants(db_path)
    assert digests(db_path) == digests(reference_db)
