"""Test oracle: ``runkey.data_fingerprint`` as it was first written, one hash update per line,
literally. The faster version must give the same digest, so that the finished shards and k-NN banks
of earlier runs keep their keys; ``benchmarks/resume_key.py`` times it as its baseline."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np


def fingerprint_per_line(records) -> str:
    """sha256 of every record's fields (boxes as bytes) and its image file's size and mtime, one update per line."""
    h = hashlib.sha256()
    for r in records:
        for f in dataclasses.fields(r):
            v = getattr(r, f.name)
            if isinstance(v, np.ndarray):
                h.update(f"{f.name} {v.dtype} {v.shape}\n".encode())
                h.update(np.ascontiguousarray(v).tobytes())
            else:
                h.update(f"{f.name}={v!r}\n".encode())
        try:
            st = os.stat(r.path)
            h.update(f"file {st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(b"file missing\n")
    return h.hexdigest()
