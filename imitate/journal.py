"""A rollback journal that makes in-place updates of a file all-or-nothing (SQLite's idea).

``JournaledFile`` is a raw file object for HDF5 (h5py's fileobj driver) that, before it first
overwrites any byte of the file as it was when opened, copies the original page to a journal
beside it (``PATH-journal``) and syncs the journal; bytes past the original end are new and
need no copy.  ``commit()`` syncs the file and deletes the journal: that deletion is the
commit point.  If the process dies before it, the journal survives and ``recover(PATH)``
writes the original pages back and truncates the file to its original length, restoring the
exact bytes of the last commit.  Appends thus cost what they write, not the file's size.

Journal layout: 16-byte header (magic, original size) then records
``(offset: u64, length: u64, original bytes)``; a torn last record is ignored (its page was
never overwritten: the record is synced before the write it protects).
"""

from __future__ import annotations

import errno
import io
import os
import struct
from pathlib import Path

PAGE = 4096
_MAGIC = b"IMJRNL01"
_HEADER = struct.Struct("<8sQ")
_RECORD = struct.Struct("<QQ")


def journal_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}-journal")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(path: str | os.PathLike) -> bool:
    """Roll back an interrupted update of path, if its journal exists; True if it did."""
    path, jpath = Path(path), journal_path(path)
    if not jpath.exists():
        return False
    data = jpath.read_bytes()
    if len(data) >= _HEADER.size:
        magic, size = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise OSError(f"{jpath}: not an imitate journal (magic {magic!r})")
        fd = os.open(path, os.O_RDWR)
        try:
            pos = _HEADER.size
            while pos + _RECORD.size <= len(data):
                offset, length = _RECORD.unpack_from(data, pos)
                pos += _RECORD.size
                if pos + length > len(data):
                    break  # torn record: its page was never overwritten
                os.pwrite(fd, data[pos:pos + length], offset)
                pos += length
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    # a journal shorter than its header was torn before any page of the file was touched
    jpath.unlink()
    _fsync_dir(path)
    return True


class JournaledFile(io.RawIOBase):
    """path opened for reading and writing, every overwrite of its original bytes journaled."""

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self._jpath = journal_path(path)
        self._fd = os.open(self.path, os.O_RDWR)
        self._size0 = os.fstat(self._fd).st_size
        self._jfd = os.open(self._jpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(self._jfd, _HEADER.pack(_MAGIC, self._size0))
        os.fsync(self._jfd)
        _fsync_dir(self.path)
        self._saved: set[int] = set()
        self._pos = 0
        # After a write fails (disk full, file-size limit, I/O error) nothing more touches the
        # file: HDF5 would otherwise retry its flushes into the error, and can crash doing so.
        # The rest of the transaction lives in memory (pages), HDF5 finishes cleanly, and the
        # caller, seeing ``error``, rolls the file back from the journal.
        self.error: OSError | None = None
        self._held: dict[int, bytearray] = {}
        self._held_end = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = max(os.fstat(self._fd).st_size, self._held_end) + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        data = os.pread(self._fd, len(buffer), self._pos)
        if self._held:
            data = bytearray(data.ljust(min(len(buffer), max(0, self._held_end - self._pos)), b"\0"))
            for p in range(self._pos // PAGE, (self._pos + len(data) + PAGE - 1) // PAGE):
                if p in self._held:
                    lo, hi = max(p * PAGE, self._pos), min((p + 1) * PAGE, self._pos + len(data))
                    data[lo - self._pos:hi - self._pos] = self._held[p][lo - p * PAGE:hi - p * PAGE]
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def write(self, buffer) -> int:
        data = bytes(buffer)
        written = 0
        if self.error is None:
            try:
                self._protect(self._pos, self._pos + len(data))
                written = os.pwrite(self._fd, data, self._pos)
                if written < len(data):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
            except OSError as exc:  # disk full, file-size limit, I/O error
                self.error = exc
        if written < len(data):
            self._hold(self._pos + written, data[written:])
        self._pos += len(data)
        return len(data)

    def _hold(self, start: int, data: bytes) -> None:
        """Keep data (written at start) in memory pages instead of the file."""
        for p in range(start // PAGE, (start + len(data) + PAGE - 1) // PAGE):
            if p not in self._held:
                self._held[p] = bytearray(os.pread(self._fd, PAGE, p * PAGE).ljust(PAGE, b"\0"))
            lo, hi = max(p * PAGE, start), min((p + 1) * PAGE, start + len(data))
            self._held[p][lo - p * PAGE:hi - p * PAGE] = data[lo - start:hi - start]
        self._held_end = max(self._held_end, start + len(data))

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is not None:  # the file is rolled back anyway
            return size
        self._protect(size, self._size0)
        os.ftruncate(self._fd, size)
        return size

    def flush(self) -> None:
        pass  # every write goes straight to the OS

    def _protect(self, start: int, end: int) -> None:
        """Journal (and sync) the original pages of [start, end) not journaled yet."""
        end = min(end, self._size0)
        if start >= end:
            return
        pages = [p for p in range(start // PAGE, (end + PAGE - 1) // PAGE) if p not in self._saved]
        if not pages:
            return
        records = []
        for p in pages:
            offset = p * PAGE
            original = os.pread(self._fd, min(PAGE, self._size0 - offset), offset)
            records.append(_RECORD.pack(offset, len(original)) + original)
        os.write(self._jfd, b"".join(records))
        os.fsync(self._jfd)
        self._saved.update(pages)

    def commit(self) -> None:
        """Make every write durable and delete the journal: the update is now permanent."""
        if self.error is not None:
            raise self.error  # a write failed: only a rollback is possible
        os.fsync(self._fd)
        os.close(self._fd)
        os.close(self._jfd)
        self._jpath.unlink()
        _fsync_dir(self.path)
        self._fd = self._jfd = -1
        super().close()

    def close(self) -> None:
        """Close without committing: the journal stays, and recover() rolls the update back."""
        if self._fd >= 0:
            os.close(self._fd)
            os.close(self._jfd)
            self._fd = self._jfd = -1
        super().close()
