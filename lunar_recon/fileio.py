"""Durable file writes: a finished file survives a power loss, an interrupted write leaves no
half file under the finished name, and the temporaries of an interrupted run are cleaned up.

Writers put their output in a temporary next to the target, flush it to disk (``fsync``),
rename it into place and flush the folder, so the rename itself is on disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's contents (a folder: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file and folder under ``folder``, the folder itself last."""
    for root, _, files in os.walk(os.fspath(folder), topdown=False):
        for name in files:
            fsync_path(os.path.join(root, name))
        fsync_path(root)


def durable_replace(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename a finished temporary (file or folder) onto ``dst`` durably: its data on disk
    first, then the rename, then the parent folder that records it."""
    src, dst = Path(src), Path(dst)
    fsync_tree(src) if src.is_dir() else fsync_path(src)
    os.replace(src, dst)
    fsync_path(dst.parent)
    return dst


def write_text_durable(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file (an index, a manifest) atomically and durably."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    tmp.write_text(text)
    return durable_replace(tmp, path)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (``*.tmp`` files or folders) an interrupted run left in ``folder``
    (not below it); for jobs that own ``folder``, at their start.  Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.endswith(TMP_SUFFIX):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
    return removed
