"""Results on disk, one file per run, written atomically and verified on read.

A result file is ``MAGIC | 8-byte length | 32-byte SHA-256 | pickle({"spec", "data", "meta"})``. It is written to
a temporary file in the same folder, flushed and fsynced, then renamed over the final name (``os.replace`` is
atomic on POSIX), so a reader sees either no file or a whole one, and two processes writing the same key leave one
whole file. A file whose length or checksum does not match (a kill in the middle of a copy, a disk fault) is
reported, moved to ``corrupt/`` and treated as missing, so the run is recomputed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

MAGIC = b"CVTR1\n"
_HEADER = len(MAGIC) + 8 + 32


class CorruptResultWarning(UserWarning):
    """A result file failed verification and was moved aside."""


class ResultStore:
    """A folder of run results keyed by :meth:`RunSpec.key`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.result"

    def __contains__(self, key: str) -> bool:
        return self.load(key) is not None

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*/*.result"))

    def save(self, key: str, spec: dict[str, Any], data: pd.DataFrame, meta: dict[str, Any] | None = None) -> Path:
        payload = pickle.dumps({"spec": spec, "data": data, "meta": meta or {}}, protocol=pickle.HIGHEST_PROTOCOL)
        blob = MAGIC + struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest() + payload
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    def _read(self, path: Path) -> dict[str, Any]:
        raw = path.read_bytes()
        if len(raw) < _HEADER or not raw.startswith(MAGIC):
            raise ValueError("missing or truncated header")
        (length,) = struct.unpack("<Q", raw[len(MAGIC) : len(MAGIC) + 8])
        digest = raw[len(MAGIC) + 8 : _HEADER]
        payload = raw[_HEADER:]
        if len(payload) != length:
            raise ValueError(f"payload is {len(payload)} bytes, header says {length}")
        if hashlib.sha256(payload).digest() != digest:
            raise ValueError("checksum mismatch")
        return pickle.loads(payload)

    def load_record(self, key: str) -> dict[str, Any] | None:
        """The stored record (spec, data, meta), or None when missing or corrupt (corrupt files are moved aside)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return self._read(path)
        except Exception as exc:  # any failure to verify means: not a valid result
            self.quarantine(path, str(exc))
            return None

    def load(self, key: str) -> pd.DataFrame | None:
        rec = self.load_record(key)
        return None if rec is None else rec["data"]

    def quarantine(self, path: Path, why: str) -> Path:
        """Move a bad result file to ``corrupt/`` and warn, naming it and why."""
        dest_dir = self.root / "corrupt"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{path.name}.{os.getpid()}"
        try:
            os.replace(path, dest)
        except FileNotFoundError:  # another process moved or rewrote it first
            return dest
        warnings.warn(f"corrupt result {path} ({why}); moved to {dest}, the run will be recomputed",
                      CorruptResultWarning, stacklevel=3)
        return dest
