"""Telling cheaply whether a file changed, for files the registry reloads
while it runs (htpasswd, access rules, TLS certificates)."""

from __future__ import annotations

import os


def file_stamp(path: str) -> tuple | None:
    """What changes when ``path`` is rewritten or replaced (a new file moved
    over it): device, inode, size, mtime and ctime in ns.  ``None`` when it
    cannot be ``stat()``ed.  One system call."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
