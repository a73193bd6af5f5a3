"""Writing output files safely: every report, export and graph file goes through here.

Writes one file at a time: the target path is checked (``privacy.check_output_path``: no system
folder, no symlink that leaves the target folder), the content goes to a hidden temp file in the
same folder, is flushed to disk, and is renamed onto the target, so a reader (or a crash) sees the
old file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.privacy import check_output_path


@contextlib.contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """A temp path next to ``target``; renamed onto it (mode 0644) when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    check_output_path(target, inside=target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; reports and exports are meant to be shared
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_target(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")
