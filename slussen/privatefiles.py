"""Files only their owner may read (mode 0600), written whole or not at all.

Exports, printed letters and backups hold health data. Each is written to `.<name>.<random>.part`
in the target's own folder (so the rename is atomic), created 0600 whatever the umask, locked
while it is written, renamed to its final name only when complete, and removed on any error. A
run that is killed cannot remove its part file: the next run calls `remove_stale_parts`, which
removes the part files of that name no running process holds (a part being written by another
run is locked and kept).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

PART_SUFFIX = ".part"


def create_private(path: Path) -> bool:
    """Create `path` as an empty file with mode 0600 if it does not exist; whether it did."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


class Part:
    """A part file being written (`file`, binary) that becomes a final file only by `finish`."""

    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path = path
        self.file = file
        self.finished: Path | None = None

    def finish(self, target: Path) -> Path:
        """Flush the part to disk and rename it to `target` (same folder), mode 0600."""
        if target.parent.resolve() != self.path.parent.resolve():
            raise ValueError(f"{target} is not in the part file's folder {self.path.parent}")
        self.file.flush()
        os.fsync(self.file.fileno())
        os.chmod(self.path, 0o600)
        os.replace(self.path, target)
        self.file.close()
        self.finished = target
        return target


@contextmanager
def private_part(folder: Path, name: str) -> Iterator[Part]:
    """A locked 0600 part file `.<name>.<random>.part` in `folder`; removed when the block ends
    unless `Part.finish` renamed it (an error in the block removes it too)."""
    fd, part_name = tempfile.mkstemp(prefix=f".{name}.", suffix=PART_SUFFIX, dir=folder)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    part = Part(Path(part_name), os.fdopen(fd, "wb"))
    try:
        yield part
    finally:
        if part.finished is None:
            part.file.close()
            part.path.unlink(missing_ok=True)


@contextmanager
def private_file(target: Path) -> Iterator[IO[bytes]]:
    """Write `target` (binary) atomically with mode 0600: it appears, complete, only when the
    block ends without error."""
    with private_part(target.parent, target.name) as part:
        yield part.file
        part.finish(target)


def write_private(target: Path, data: bytes) -> None:
    """Write `data` to `target` atomically with mode 0600."""
    with private_file(target) as sink:
        sink.write(data)


def remove_stale_parts(folder: Path, name: str = "*") -> list[Path]:
    """Remove the part files `.<name>.*.part` in `folder` (`name` may be a glob) that no running
    process holds; return those removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob(f".{name}.*{PART_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
            removed.append(path)
        except BlockingIOError:
            pass  # another run is writing it
        finally:
            os.close(fd)
    return removed
