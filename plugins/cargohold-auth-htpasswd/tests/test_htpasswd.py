"""cargohold_auth_htpasswd.htpasswd: parsing, Basic headers, verification and its cache."""

from __future__ import annotations

import base64
import threading
import time

import bcrypt
import pytest

from cargohold_auth_htpasswd import htpasswd as mod
from cargohold_auth_htpasswd.htpasswd import HtpasswdFile, InvalidCredentials, parse_basic, parse_htpasswd
from cargohold.testing.auth import htpasswd_line, write_htpasswd


def b64(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize("header,expected", [
    (None, None),
    ("", None),
    ("Bearer abc", None),
    (b64(b":"), None),
    (b64(b"alice:pw"), ("alice", b"pw")),
    (b64(b"alice:pw:with:colons"), ("alice", b"pw:with:colons")),
    ("basic " + base64.b64encode(b"a:b").decode(), ("a", b"b")),
    (b64("jos\u00e9:p\u00e4ss".encode()), ("jos\u00e9", "p\u00e4ss".encode())),
])
def test_parse_basic(header, expected):
    assert parse_basic(header) == expected


@pytest.mark.parametrize("header", ["Basic ***", b64(b"nocolon"), b64(b":pw"), b64(b"\xff:pw"), "Basic a"])
def test_parse_basic_malformed(header):
    with pytest.raises(InvalidCredentials, match="malformed Basic credentials"):
        parse_basic(header)


def test_parse_htpasswd_skips_comments_and_blank_lines():
    line = htpasswd_line("a", "pw")
    entries = parse_htpasswd(f"# users\n\n  {line}  \n", "f")
    assert entries == {"a": line.split(":", 1)[1]}


def test_concurrent_checks_of_the_same_credentials_share_one_bcrypt(tmp_path, monkeypatch):
    path = write_htpasswd(tmp_path / "h", {"alice": "pw"})
    file = HtpasswdFile(path)
    calls = []
    real = mod._checkpw

    def slow(password, hashed):
        calls.append(password)
        time.sleep(0.3)
        return real(password, hashed)

    monkeypatch.setattr(mod, "_checkpw", slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(file.verify("alice", "pw"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8
    assert len(calls) == 1
    assert file.verify("alice", "wrong") is False
    assert len(calls) == 2


def test_reload_during_a_check_does_not_cache_the_old_hash(tmp_path, monkeypatch):
    path = write_htpasswd(tmp_path / "h", {"alice": "old"})
    file = HtpasswdFile(path)
    real = mod._checkpw

    def replace_file_meanwhile(password, hashed):
        ok = real(password, hashed)
        write_htpasswd(path, {"alice": "new"})
        file.refresh()
        return ok

    monkeypatch.setattr(mod, "_checkpw", replace_file_meanwhile)
    assert file.verify("alice", "old") is True  # was right when checked
    monkeypatch.setattr(mod, "_checkpw", real)
    assert file.verify("alice", "old") is False  # but not remembered
    assert file.verify("alice", "new") is True


def test_unknown_users_cost_a_bcrypt_at_the_files_cost(tmp_path, monkeypatch):
    path = tmp_path / "h"
    path.write_text(htpasswd_line("a", "pw", cost=6) + "\n")
    file = HtpasswdFile(str(path))
    seen = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda p, h: seen.append(h[:7]) or real(p, h))
    assert file.verify("nobody", "pw") is False
    assert seen == [b"$2b$06$"]


def test_passwords_over_72_bytes_are_refused(tmp_path):
    long = "x" * 72
    path = write_htpasswd(tmp_path / "h", {"a": long})
    file = HtpasswdFile(path, cache_ttl=0)
    assert file.verify("a", long)
    assert not file.verify("a", long + "y")  # bcrypt would ignore the extra byte
