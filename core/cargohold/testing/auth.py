"""Credentials for auth tests: htpasswd files and Basic headers."""

from __future__ import annotations

import base64
import os


def htpasswd_line(user: str, password: str, cost: int = 4, variant: str = "2y") -> str:
    """One ``user:hash`` line as ``htpasswd -B -C <cost>`` writes it (its
    ``$2y$`` variant by default).  Cost 4 keeps tests fast; use 12 to
    measure what production costs."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return f"{user}:${variant}${hashed[4:]}"


def write_htpasswd(path: str | os.PathLike, users: dict[str, str], cost: int = 4) -> str:
    """Write an htpasswd file of bcrypt entries for ``{user: password}``
    (replacing the file atomically, so a server sees a new inode) and return
    its path."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(htpasswd_line(u, p, cost) + "\n" for u, p in users.items())
    os.replace(tmp, path)
    return path


def basic(user: str, password: str) -> dict[str, str]:
    """``{"Authorization": "Basic ..."}`` for ``user``/``password``."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
