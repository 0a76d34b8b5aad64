"""What the shared suite cannot see: how the driver uses Azure (requests
made, blocks staged, temporary blobs), SAS redirects, the ways to
authenticate, configuration errors and a backend that is down."""

import datetime as dt
import time
import uuid
from importlib.metadata import entry_points
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

import cargohold_storage_azure as plugin
from cargohold.app import create_app
from cargohold.config import ConfigError, mask_secrets
from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import PathNotFound, StorageError
from cargohold.testing.server import free_port
from cargohold.testing.storage import blob
from cargohold_storage_azure import create_driver, driver_from_settings, parse_settings
from cargohold_storage_azure import driver as driver_module
from cargohold_storage_azure.driver import TMP_DIR

MiB = 1 << 20
ACCOUNT = "devstoreaccount1"


class Recorder:
    """Records every HTTP request the SDK sends: method, blob name, query
    and body size."""

    def __init__(self, container: str):
        self.container = container
        self.requests: list[tuple[str, str, dict, int, dict]] = []

    def __call__(self, pipeline_request) -> None:
        http = pipeline_request.http_request
        parts = urlsplit(http.url)
        name = parts.path.split(f"/{self.container}", 1)[-1].lstrip("/")
        body = http.body
        size = len(body) if isinstance(body, (bytes, bytearray)) else 0
        self.requests.append((http.method, name, parse_qs(parts.query), size, dict(http.headers)))

    def clear(self) -> None:
        self.requests.clear()

    def downloads(self) -> list:
        """GETs of blob content (not listings or block lists)."""
        return [r for r in self.requests if r[0] == "GET" and "comp" not in r[2] and "restype" not in r[2]]

    def staged_bytes(self) -> int:
        return sum(r[3] for r in self.requests if r[0] == "PUT" and r[2].get("comp") == ["block"])


@pytest.fixture
def recorded(azurite):
    """(driver wrapped as the core does, its Recorder, its raw driver)."""
    container = "recorded"
    recorder = Recorder(container)
    raw = driver_from_settings(parse_settings(azurite.params(container=container, blocksize="1MiB",
                                                              rootdirectory=uuid.uuid4().hex[:8])),
                               raw_request_hook=recorder)
    raw.prepare()
    recorder.clear()
    yield CheckedDriver(raw), recorder, raw
    raw.close()


@pytest.fixture
def driver(azurite):
    d = create_driver(azurite.params(blocksize="1MiB"))
    yield CheckedDriver(d)
    d.close()


# -- how the driver uses the service ---------------------------------------------------


def test_uploads_append_and_move_stay_server_side(recorded):
    store, recorder, _ = recorded
    chunks = [blob(3 * MiB + 5, seed=1), blob(2 * MiB + MiB // 2, seed=2), blob(4 * MiB, seed=3)]
    path = "/uploads/u1/data"
    for i, chunk in enumerate(chunks):
        recorder.clear()
        with store.writer(path, append=i > 0) as w:
            for j in range(0, len(chunk), 256 * 1024):
                w.write(chunk[j:j + 256 * 1024])
            w.commit()
        # Every byte goes up once; nothing already stored comes back down
        # or goes up again.
        assert recorder.staged_bytes() == len(chunk)
        assert recorder.downloads() == []
    data = b"".join(chunks)
    assert store.stat(path).size == len(data)

    recorder.clear()
    store.move(path, "/blobs/sha256/ab/data")
    methods = [(method, query.get("comp")) for method, _, query, _, _ in recorder.requests]
    assert methods == [("PUT", None), ("DELETE", None)]  # Copy Blob, then the source removed
    copy_headers = recorder.requests[0][4]
    assert copy_headers["x-ms-copy-source"].endswith("/uploads/u1/data")
    assert recorder.staged_bytes() == 0 and recorder.downloads() == []

    with pytest.raises(PathNotFound):
        store.stat(path)
    assert store.get_content("/blobs/sha256/ab/data") == data
    # The moved blob keeps its block list: it can be appended to in place.
    recorder.clear()
    with store.writer("/blobs/sha256/ab/data", append=True) as w:
        w.write(b"tail")
        w.commit()
    assert recorder.downloads() == [] and recorder.staged_bytes() == 4
    assert store.get_content("/blobs/sha256/ab/data") == data + b"tail"
    assert store.list("/") == ["/blobs"]  # the upload's directory vanished with its last file
    store.delete("/blobs")


def test_small_writes_are_one_block_on_the_target(recorded):
    store, recorder, _ = recorded
    with store.writer("/small") as w:
        w.write(b"x" * 1000)
        w.commit()
    ops = [(method, name.rsplit("/", 1)[-1], query.get("comp")) for method, name, query, _, _ in recorder.requests]
    assert ops == [("PUT", "small", ["block"]), ("PUT", "small", ["blocklist"])]  # no temporary blob
    store.delete("/small")


def test_large_writer_stages_on_a_temporary_blob(recorded):
    store, recorder, raw = recorded
    with store.writer("/large") as w:
        w.write(blob(2 * MiB + 1))
        w.commit()
    staged = {name for method, name, query, _, _ in recorder.requests if query.get("comp") == ["block"]}
    assert len(staged) == 1 and f"/{TMP_DIR}/" in staged.pop()
    copies = [r for r in recorder.requests if "x-ms-copy-source" in r[4]]
    assert len(copies) == 1 and copies[0][1] == raw.key("/large")
    assert not list(raw.container.list_blobs(name_starts_with=f"{raw.prefix}{TMP_DIR}/"))
    assert store.get_content("/large") == blob(2 * MiB + 1)
    store.delete("/large")


def test_nothing_uncommitted_is_visible(recorded):
    store, _, raw = recorded
    w = store.writer("/pending/file")
    w.write(blob(3 * MiB))  # three blocks staged, on a temporary blob
    everything = list(raw.container.list_blobs(name_starts_with=raw.prefix))
    assert everything == []  # not even the temporary blob: its blocks are uncommitted
    with pytest.raises(PathNotFound):
        store.stat("/pending/file")
    assert store.list("/") == []
    w.cancel()
    staged = list(raw.container.list_blobs(name_starts_with=raw.prefix, include=["uncommittedblobs"]))
    assert staged == []  # cancel dropped the staged blocks too

    store.put_content("/pending/file", b"committed")
    w = store.writer("/pending/file", append=True)
    w.write(blob(3 * MiB))  # staged on the target itself
    assert store.get_content("/pending/file") == b"committed"
    assert store.stat("/pending/file").size == len(b"committed")
    w.close()
    assert store.get_content("/pending/file") == b"committed"
    store.delete("/pending")


def test_temporary_blobs_never_listed(recorded):
    store, _, raw = recorded
    raw.container.upload_blob(f"{raw.prefix}{TMP_DIR}/leftover", b"from a crash")
    assert store.list("/") == []
    assert list(store.walk("/")) == []
    with pytest.raises(PathNotFound):
        store.delete("/x")
    raw.container.delete_blob(f"{raw.prefix}{TMP_DIR}/leftover")


def test_stale_temporary_blobs_removed_at_start(azurite, monkeypatch):
    params = azurite.params(rootdirectory="stale")
    first = create_driver(params)
    first.container.upload_blob(f"stale/{TMP_DIR}/leftover", b"from a crash")
    create_driver(params)
    assert [b.name for b in first.container.list_blobs()] == [f"stale/{TMP_DIR}/leftover"]  # recent: kept
    monkeypatch.setattr(driver_module, "STALE_TMP_SECONDS", -60)
    create_driver(params)
    assert list(first.container.list_blobs()) == []


def test_append_to_a_blob_written_elsewhere(driver):
    raw = driver.driver
    raw.container.upload_blob(raw.key("/foreign"), b"uploaded with one Put Blob")
    with driver.writer("/foreign", append=True) as w:
        assert w.size == len(b"uploaded with one Put Blob")
        w.write(b", then appended")
        w.commit()
    assert driver.get_content("/foreign") == b"uploaded with one Put Blob, then appended"
    driver.delete("/foreign")


def test_reader_sees_one_version(driver):
    old = blob(9 * MiB, seed=1)
    driver.put_content("/versioned", old)
    with driver.reader("/versioned") as r:
        assert r.read(MiB) == old[:MiB]
        driver.put_content("/versioned", b"replaced")
        with pytest.raises(StorageError):
            while r.read(MiB):
                pass
    driver.delete("/versioned")


def test_concurrent_large_writers_same_path(driver):
    # Several blocks each, so each stages on its own temporary blob.
    contents = [bytes([65 + i]) * (3 * MiB + i) for i in range(3)]
    writers = [driver.writer("/race") for _ in contents]
    for offset in range(0, 3 * MiB + 3, 512 * 1024):
        for w, data in zip(writers, contents, strict=True):
            w.write(data[offset:offset + 512 * 1024])
    for w, data in zip(writers, contents, strict=True):
        w.commit()
        assert driver.get_content("/race") == data
        w.close()
    driver.delete("/race")


# -- redirects ---------------------------------------------------------------------------


def test_redirect_url_is_a_working_sas_url(azurite):
    d = create_driver(azurite.params(redirectexpiry="3s"))
    data = blob(2 * MiB + 7)
    d.put_content("/blobs/one", data)
    url = d.redirect_url("/blobs/one")
    assert url.startswith(azurite.url + "/")
    query = parse_qs(urlsplit(url).query)
    assert query["sp"] == ["r"]  # read only
    expiry = dt.datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
    assert 0 < (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 4
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == data
    resp = requests.get(url, headers={"Range": "bytes=5-9"}, timeout=10)
    assert resp.status_code == 206 and resp.content == data[5:10]
    assert requests.head(d.redirect_url("/blobs/one", "HEAD"), timeout=10).status_code == 200
    assert requests.put(url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10).status_code == 403
    time.sleep(4)
    assert requests.get(url, timeout=10).status_code == 403  # expired
    d.delete("/blobs")


def test_connection_string(azurite):
    d = create_driver({"connectionstring": azurite.connection_string(), "container": "viaconnectionstring"})
    d.put_content("/a", b"x")
    assert d.get_content("/a") == b"x"
    assert requests.get(d.redirect_url("/a"), timeout=10).content == b"x"  # it holds the key: signs
    d.delete("/a")


def test_sas_token_credentials(azurite):
    owner = create_driver(azurite.params(container="viasas"))
    token = generate_container_sas(
        ACCOUNT, "viasas", account_key=azurite.params()["accountkey"],
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    d = create_driver({"serviceurl": azurite.url, "sastoken": "?" + token, "container": "viasas"})
    with d.writer("/dir/file") as w:
        w.write(blob(9 * MiB))  # a temporary blob, committed and copied
        w.commit()
    assert d.list("/") == ["/dir"]
    d.move("/dir/file", "/dir/moved")
    assert d.get_content("/dir/moved") == blob(9 * MiB)
    assert d.redirect_url("/dir/moved") is None  # no key to sign with: the registry serves the bytes
    d.delete("/dir")
    assert owner.list("/") == []


def test_wrong_account_key_fails_start_up(azurite):
    params = azurite.params(accountkey="d3Jvbmcga2V5IQ==")
    with pytest.raises(ValueError, match="storage.azure: the service rejected the credentials"):
        create_driver(params)


# -- an unreachable backend ---------------------------------------------------------------


def test_backend_down_gives_storage_errors_quickly():
    params = {"accountname": ACCOUNT, "accountkey": "a2V5", "container": "down", "maxretries": 2,
              "retrydelay": "0.1s", "serviceurl": f"http://127.0.0.1:{free_port()}/{ACCOUNT}"}
    started = time.monotonic()
    d = CheckedDriver(create_driver(params))  # start-up goes on: the backend may come back
    assert time.monotonic() - started < 5
    calls = [
        lambda: d.get_content("/a"), lambda: d.put_content("/a", b"x"), lambda: d.reader("/a"),
        lambda: d.writer("/a", append=True), lambda: d.stat("/a"), lambda: d.list("/"),
        lambda: list(d.walk("/")), lambda: d.move("/a", "/b"), lambda: d.delete("/a"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            call()
        assert not isinstance(info.value, PathNotFound)
        assert "unreachable" in str(info.value)
        assert time.monotonic() - started < 5
    w = d.writer("/big")
    with pytest.raises(StorageError):
        w.write(blob(9 * MiB))
    w.close()


def test_backend_stopped_mid_write_then_back(azurite):
    d = CheckedDriver(create_driver(azurite.params(container="outage", blocksize="1MiB")))
    w = d.writer("/blob")
    w.write(blob(3 * MiB))
    azurite.stop()
    try:
        with pytest.raises(StorageError):
            w.write(blob(3 * MiB))
            w.commit()
        w.close()
    finally:
        azurite.start()
    with pytest.raises(PathNotFound):
        d.stat("/blob")
    assert d.list("/") == []
    with d.writer("/blob") as w:
        w.write(blob(6 * MiB))
        w.commit()
    assert d.get_content("/blob") == blob(6 * MiB)
    d.delete("/blob")


# -- configuration ---------------------------------------------------------------------------

KEY = "a2V5"
GOOD = {"accountname": "account1", "accountkey": KEY, "container": "registry"}


@pytest.mark.parametrize("params, key", [
    ({}, "storage.azure.container"),
    ({"accountname": "account1", "accountkey": KEY}, "storage.azure.container"),
    ({**GOOD, "container": "Bad_Name"}, "storage.azure.container"),
    ({"accountname": "account1", "container": "registry"}, "storage.azure.accountkey"),
    ({"accountkey": KEY, "container": "registry"}, "storage.azure.accountname"),
    ({"container": "registry"}, "storage.azure"),
    ({**GOOD, "accountkey": "not base64!"}, "storage.azure.accountkey"),
    ({**GOOD, "accountname": "Not-An-Account"}, "storage.azure.accountname"),
    ({**GOOD, "connectionstring": "AccountName=a;AccountKey=a2V5"}, "storage.azure.accountkey"),
    ({"connectionstring": "AccountName=a;AccountKey=a2V5", "realm": "x", "container": "registry"},
     "storage.azure.realm"),
    ({"connectionstring": "nonsense", "container": "registry"}, "storage.azure.connectionstring"),
    ({**GOOD, "sastoken": "sv=x"}, "storage.azure.sastoken"),
    ({"sastoken": "sv=x", "container": "registry"}, "storage.azure.accountname"),
    ({**GOOD, "realm": "x", "serviceurl": "https://x"}, "storage.azure.realm"),
    ({**GOOD, "serviceurl": "ftp://x"}, "storage.azure.serviceurl"),
    ({**GOOD, "blocksize": "100k"}, "storage.azure.blocksize"),
    ({**GOOD, "blocksize": "8 elephants"}, "storage.azure.blocksize"),
    ({**GOOD, "redirectexpiry": "soon"}, "storage.azure.redirectexpiry"),
    ({**GOOD, "redirectexpiry": 0}, "storage.azure.redirectexpiry"),
    ({**GOOD, "maxretries": -1}, "storage.azure.maxretries"),
    ({**GOOD, "readtimeout": "0s"}, "storage.azure.readtimeout"),
    ({**GOOD, "rootdirectory": "a/~b"}, "storage.azure.rootdirectory"),
    ({**GOOD, "maxthreads": 4}, "storage.azure.maxthreads"),
    ({"accountname": "account1", "container": "registry", "credentials": {"type": "client_secret"}},
     "storage.azure.credentials.clientid"),
    ({"accountname": "account1", "container": "registry", "credentials": {"type": "magic"}},
     "storage.azure.credentials.type"),
    ({**GOOD, "credentials": {"type": "default_credentials"}}, "storage.azure.credentials"),
    ({**GOOD, "credentials": {"typo": "x"}}, "storage.azure.credentials.typo"),
])
def test_settings_errors_name_the_key(params, key):
    with pytest.raises(ValueError) as info:
        parse_settings(params)
    assert str(info.value).startswith(key + ":"), str(info.value)


def test_settings_defaults_and_endpoints():
    s = parse_settings(GOOD)
    assert s.account_url == "https://account1.blob.core.windows.net"
    assert (s.blocksize, s.redirectexpiry, s.maxretries) == (8 * MiB, 1200.0, 3)
    assert parse_settings({**GOOD, "realm": "core.chinacloudapi.cn"}).account_url == \
        "https://account1.blob.core.chinacloudapi.cn"
    assert parse_settings({**GOOD, "serviceurl": "http://127.0.0.1:10000/account1/"}).account_url == \
        "http://127.0.0.1:10000/account1"
    s = parse_settings({**GOOD, "rootdirectory": "/a/b/", "blocksize": "4MiB", "redirectexpiry": "1h"})
    assert (s.rootdirectory, s.blocksize, s.redirectexpiry) == ("a/b", 4 * MiB, 3600.0)
    shared = parse_settings({**GOOD, "credentials": {"type": "shared_key"}})
    assert shared.accountkey == KEY and shared.credential_type is None
    assert KEY not in repr(s)


def test_app_configured_from_environment(azurite):
    env = {
        "CARGOHOLD_STORAGE": "azure",
        "CARGOHOLD_STORAGE_AZURE_ACCOUNTNAME": ACCOUNT,
        "CARGOHOLD_STORAGE_AZURE_ACCOUNTKEY": azurite.params()["accountkey"],
        "CARGOHOLD_STORAGE_AZURE_SERVICEURL": azurite.url,
        "CARGOHOLD_STORAGE_AZURE_CONTAINER": "fromenv",
        "CARGOHOLD_STORAGE_AZURE_BLOCKSIZE": "2MiB",
        "CARGOHOLD_STORAGE_AZURE_REDIRECTEXPIRY": "5m",
    }
    app = create_app(environ=env)
    driver = app.extensions["cargohold"].driver.driver
    assert driver.name == "azure"
    assert (driver.blocksize, driver.redirectexpiry) == (2 * MiB, 300.0)
    assert driver.container.container_name == "fromenv"
    masked = mask_secrets(app.config["CARGOHOLD"], plugin.cargohold_config_schema())["storage"]["azure"]
    assert masked["accountkey"] == "******"
    with pytest.raises(ConfigError, match="storage.azure.blocksize"):
        create_app(environ={**env, "CARGOHOLD_STORAGE_AZURE_BLOCKSIZE": "huge"})
    with pytest.raises(ConfigError, match="storage.azure.accountkey"):
        create_app(environ={k: v for k, v in env.items() if "ACCOUNTKEY" not in k})
    with pytest.raises(ConfigError, match="storage.azure.acountname"):
        create_app(environ={**env, "CARGOHOLD_STORAGE_AZURE_ACOUNTNAME": "x"})


def test_secrets_masked_as_the_schema_declares():
    masked = mask_secrets({"storage": {"azure": {"connectionstring": "AccountKey=secret", "sastoken": "sig=x",
                                                 "accountkey": "k", "accountname": "acct",
                                                 "credentials": {"secret": "s", "clientid": "c"}}}},
                          plugin.cargohold_config_schema())
    assert masked["storage"]["azure"] == {"connectionstring": "******", "sastoken": "******",
                                          "accountkey": "******", "accountname": "acct",
                                          "credentials": {"secret": "******", "clientid": "c"}}


def test_entry_point_and_hooks():
    (ep,) = [ep for ep in entry_points(group="cargohold") if ep.name == "storage-azure"]
    assert ep.load() is plugin
    assert plugin.cargohold_storage_drivers() == {"azure": create_driver}
    schema = plugin.cargohold_config_schema()["storage.azure"]
    assert {"accountname", "accountkey", "container", "realm", "serviceurl", "connectionstring", "sastoken",
            "credentials", "rootdirectory", "redirectexpiry", "blocksize"} <= set(schema)


def test_get_content_reads_again_a_blob_replaced_under_it(driver, monkeypatch):
    """The reader pins the version whose properties it read; a concurrent
    replacement makes the pinned read fail (412), and get_content, a small
    whole read, reads the new version instead of failing."""
    driver.put_content("/replaced", b"old")
    raw = driver.driver
    real_reader = raw.reader
    replaced = []

    def reader(path, offset=0):
        opened = real_reader(path, offset)
        if not replaced:
            replaced.append(path)
            driver.put_content(path, b"new")  # after the properties, before the bytes
        return opened

    monkeypatch.setattr(raw, "reader", reader)
    assert driver.get_content("/replaced") == b"new"
    assert replaced == ["/replaced"]
    driver.delete("/replaced")
