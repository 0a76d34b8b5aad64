"""htpasswd files of bcrypt entries, and HTTP Basic credentials checked
against them.  Used by this plugin's provider and by the token auth
plugin's token server (which depends on this distribution for it).

The file format is Apache's ``user:hash`` per line; blank lines and lines
starting with ``#`` are ignored.  Only bcrypt hashes (``$2y$``, ``$2b$``,
``$2a$``, as ``htpasswd -B`` writes them) are accepted, as by the reference
registry; any other format fails loading with the line number.

bcrypt is deliberately slow (about 0.25 s per check at cost 12), so
:class:`HtpasswdFile` remembers credentials it verified: the cache key is an
HMAC-SHA256 of user and password under a random per-process key (the cache
never holds a password or a fast unsalted hash of one), entries live for a
short TTL, must still match the user's current hash, and the whole cache is
dropped whenever the file is reloaded.  Wrong passwords are never cached:
each costs a full bcrypt check.  Concurrent checks of the same credentials
share one bcrypt computation.  The bcrypt work runs off the event loop
(:func:`cargohold.blocking.offload`) so other requests keep flowing.

The file is re-read when its inode, size, mtime or ctime change, checked on
each verification (one ``stat``).  A reload that fails (file missing or
invalid) is logged and denies everyone until the file is fixed: it fails
closed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from typing import Callable

import bcrypt

from cargohold.blocking import offload
from cargohold.filestamp import file_stamp
from cargohold.lru import LRU

log = logging.getLogger("cargohold.auth")

#: bcrypt as Apache's ``htpasswd -B`` and other tools write it: variant,
#: two-digit cost, 22 characters of salt and 31 of hash.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}\Z")

# bcrypt ignores (reference Go) or refuses (Python bcrypt >= 5) passwords
# beyond 72 bytes; we refuse them.
BCRYPT_MAX_PASSWORD = 72


class InvalidCredentials(Exception):
    """Credentials were given but are malformed, or the user or password is
    wrong.  ``reason`` is for the log (never contains the password);
    ``user`` is the claimed user name, if it could be read."""

    def __init__(self, reason: str, user: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.user = user


def parse_htpasswd(text: str, origin: str) -> dict[str, str]:
    """``{user: bcrypt hash}`` from the file's text.  Raises ``ValueError``
    naming ``origin`` and the line of a malformed entry, an unsupported hash
    format or a repeated user."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise ValueError(f"{origin}: line {number}: expected 'user:hash'")
        if not BCRYPT_HASH.match(hashed):
            kind = _hash_kind(hashed)
            raise ValueError(f"{origin}: line {number}: user {user!r} has an unsupported password hash "
                             f"({kind}); only bcrypt is accepted (create entries with 'htpasswd -B')")
        if user in entries:
            raise ValueError(f"{origin}: line {number}: user {user!r} appears more than once")
        entries[user] = hashed
    return entries


def _hash_kind(hashed: str) -> str:
    if hashed.startswith("$apr1$"):
        return "Apache MD5"
    if hashed.startswith("{SHA}"):
        return "SHA-1"
    if hashed.startswith(("$5$", "$6$")):
        return "SHA-crypt"
    if hashed.startswith("$2"):
        return "malformed bcrypt"
    return "crypt or plain text"


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """``(user, password)`` from an ``Authorization: Basic ...`` value;
    ``None`` when there is no header, it uses another scheme, or user and
    password are both empty (what skopeo and containerd send when they
    have no credentials for a Basic challenge).  Raises
    :class:`InvalidCredentials` for a malformed Basic value."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCredentials("malformed Basic credentials (not base64)") from None
    raw_user, sep, password = decoded.partition(b":")
    if decoded == b":":
        return None
    if not sep:
        raise InvalidCredentials("malformed Basic credentials (no ':' between user and password)")
    try:
        user = raw_user.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCredentials("malformed Basic credentials (user name is not UTF-8)") from None
    if not user:
        raise InvalidCredentials("malformed Basic credentials (empty user name)")
    return user, password


def _checkpw(password: bytes, hashed: str) -> bool:
    if len(password) > BCRYPT_MAX_PASSWORD:
        return False
    try:
        return bcrypt.checkpw(password, hashed.encode("ascii"))
    except ValueError:
        return False


class _Pending:
    """One bcrypt check in flight; others with the same key wait for it."""

    def __init__(self):
        self.done = threading.Event()
        self.ok = False


class HtpasswdFile:
    """A bcrypt htpasswd file, reloaded when it changes, with a cache of
    verified credentials (see the module docstring).

    :param path: the file.  Loaded at construction: ``ValueError`` naming
        the file (and line) when it is unreadable or invalid.
    :param cache_ttl: seconds a verified user/password pair is trusted
        without bcrypt; ``0`` disables the cache.
    :param cache_size: at most this many cached pairs (least recently used
        dropped first).
    """

    def __init__(self, path: str, cache_ttl: float = 60.0, cache_size: int = 10000,
                 clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache = LRU(cache_size)
        self._cache_key = secrets.token_bytes(32)
        self._inflight: dict[bytes, _Pending] = {}
        self._lock = threading.Lock()
        self._dummy: dict[int, str] = {}
        self._stamp, self._entries = self._read()

    # -- the file ------------------------------------------------------------------

    def _read(self) -> tuple[tuple, dict[str, str]]:
        try:
            stamp = file_stamp(self.path)
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"{self.path}: cannot read htpasswd file: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: htpasswd file is not UTF-8 text") from None
        return stamp, parse_htpasswd(text, self.path)

    def refresh(self) -> bool:
        """Reload the file if it changed since it was read; returns whether
        it did.  A failed reload denies everyone until the file is fixed."""
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return False
        try:
            stamp, entries = self._read()
        except ValueError as e:
            log.error("htpasswd reload failed, denying all users until fixed: %s", e)
            entries = {}
        else:
            log.info("htpasswd file %s reloaded: %d users", self.path, len(entries))
        self._stamp, self._entries = stamp, entries
        self._cache = LRU(self._cache.capacity)
        return True

    def users(self) -> list[str]:
        return sorted(self._entries)

    # -- verification -----------------------------------------------------------------

    def verify(self, user: str, password: bytes | str) -> bool:
        """Whether ``password`` is ``user``'s.  Unknown users cost a bcrypt
        check too, so timing does not tell which users exist."""
        if isinstance(password, str):
            password = password.encode("utf-8")
        self.refresh()
        hashed = self._entries.get(user)
        if hashed is None:
            offload(self._check_unknown, password)
            return False
        if self.cache_ttl <= 0:
            return offload(_checkpw, password, hashed)

        name = user.encode("utf-8")  # length-prefixed: ("a", "b:c") and ("a:b", "c") differ
        key = hmac.new(self._cache_key, len(name).to_bytes(4, "big") + name + password, hashlib.sha256).digest()
        cached = self._cache.get(key)
        if cached is not None:
            expires, cached_hash = cached
            if expires > self._clock() and hmac.compare_digest(cached_hash, hashed):
                return True
            self._cache.pop(key)

        with self._lock:
            pending = self._inflight.get(key)
            owner = pending is None
            if owner:
                pending = self._inflight[key] = _Pending()
        if not owner:
            pending.done.wait()
            return pending.ok
        try:
            pending.ok = offload(_checkpw, password, hashed)
            if pending.ok and self._entries.get(user) == hashed:  # not reloaded meanwhile
                self._cache.put(key, (self._clock() + self.cache_ttl, hashed))
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            pending.done.set()
        return pending.ok

    def _check_unknown(self, password: bytes) -> None:
        """Spend what checking a known user costs: bcrypt against a hash at
        the file's highest cost, made once per cost."""
        cost = max((int(h[4:6]) for h in self._entries.values()), default=10)
        if cost not in self._dummy:
            self._dummy[cost] = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost)).decode("ascii")
        _checkpw(password, self._dummy[cost])

    def authenticate(self, authorization: str | None, remote_addr: str | None = None) -> str | None:
        """Check an ``Authorization`` header value.  Returns the user name,
        ``None`` without Basic credentials, and raises
        :class:`InvalidCredentials` for malformed or wrong ones, after
        logging the attempt (user and remote address, never the password)."""
        try:
            parsed = parse_basic(authorization)
        except InvalidCredentials as e:
            log.warning("authentication failed from %s: %s", remote_addr or "-", e.reason)
            raise
        if parsed is None:
            return None
        user, password = parsed
        if not self.verify(user, password):
            reason = "wrong password" if user in self._entries else "unknown user"
            log.warning("authentication failed for user %r from %s: %s", user, remote_addr or "-", reason)
            raise InvalidCredentials(reason, user)
        return user
