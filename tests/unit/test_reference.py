"""Grammar of repository names, tags and digests."""

import hashlib

import pytest

from cargohold.errors import DigestInvalid, NameInvalid, TagInvalid
from cargohold.reference import (
    algorithm_of,
    check_algorithm,
    check_digest,
    check_name,
    check_tag,
    digest_bytes,
    is_digest,
    new_hasher,
)

SHA256 = "sha256:" + hashlib.sha256(b"x").hexdigest()
SHA512 = "sha512:" + hashlib.sha512(b"x").hexdigest()


@pytest.mark.parametrize("name", [
    "a", "0", "app", "library/ubuntu", "a/b/c/d/e", "my-org/my_app", "a__b", "a--b", "a---b", "a.b",
    "a_b", "a.b-c_d__e", "0a/9z", "a" * 255, "/".join(["abc"] * 63) + "/abc",
])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", [
    "", "A", "App", "a___b", "a..b", "a._b", "-a", "a-", "_a", "a_", ".a", "a.", "a/", "/a", "a//b",
    "a/../b", "..", "a/./b", "a b", "a:b", "a@b", "a\\b", "a\x00", "é", "a" * 256,
    "/".join(["abcd"] * 52),  # 259 characters across components
    "app\n", "app\r\n", "\napp",
])
def test_invalid_names(name):
    with pytest.raises(NameInvalid) as info:
        check_name(name)
    assert info.value.status == 400 and info.value.code == "NAME_INVALID"
    assert info.value.detail == {"name": name[:300]}


def test_name_length_counts_the_whole_name():
    name = "a" * 100 + "/" + "b" * 100 + "/" + "c" * 53
    assert len(name) == 255 and check_name(name) == name
    with pytest.raises(NameInvalid):
        check_name(name + "e")


@pytest.mark.parametrize("tag", ["latest", "v1.0.0", "_private", "A", "1", "a" * 128, "a_b-c.d", "X" * 128])
def test_valid_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", [
    "", ".hidden", "-dash", "a" * 129, "a/b", "a:b", "a b", "..", "tag!", "ü", "v1\n", "v1\r",
])
def test_invalid_tags(tag):
    with pytest.raises(TagInvalid) as info:
        check_tag(tag)
    assert (info.value.status, info.value.code) == (400, "TAG_INVALID")


@pytest.mark.parametrize("digest", [SHA256, SHA512])
def test_valid_digests(digest):
    assert check_digest(digest) == digest


@pytest.mark.parametrize("digest,message", [
    ("md5:" + hashlib.md5(b"x").hexdigest(), "unsupported digest algorithm 'md5'"),
    ("sha1:" + hashlib.sha1(b"x").hexdigest(), "unsupported digest algorithm 'sha1'"),
    ("sha256:" + "a" * 63, "invalid digest"),
    ("sha256:" + "a" * 65, "invalid digest"),
    (SHA256.upper(), "invalid digest"),
    ("sha256:" + SHA256[7:].upper(), "invalid digest"),
    ("sha256:" + "g" * 64, "invalid digest"),
    ("sha512:" + "a" * 64, "invalid digest"),
    ("sha256:", "invalid digest"),
    (":" + "a" * 64, "invalid digest"),
    ("a" * 64, "invalid digest"),
    ("", "invalid digest"),
    ("sha256:" + "../" * 21 + "a", "invalid digest"),
    ("sha256:" + "a" * 64 + "\n", "invalid digest"),
])
def test_invalid_digests(digest, message):
    with pytest.raises(DigestInvalid) as info:
        check_digest(digest)
    assert (info.value.status, info.value.code) == (400, "DIGEST_INVALID")
    assert info.value.message == message


def test_digest_helpers():
    assert is_digest(SHA256) and is_digest("md5:x") and not is_digest("latest")
    assert algorithm_of(SHA512) == "sha512"
    assert digest_bytes(b"x") == SHA256
    assert digest_bytes(b"x", "sha512") == SHA512
    hasher = new_hasher("sha512")
    hasher.update(b"x")
    assert f"sha512:{hasher.hexdigest()}" == SHA512
    assert check_algorithm("sha256") == "sha256"
    with pytest.raises(DigestInvalid):
        check_algorithm("md5")
