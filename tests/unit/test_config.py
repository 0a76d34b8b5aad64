"""cargohold.config: defaults, YAML merge, environment overrides, validation."""

from __future__ import annotations

import pytest

from cargohold.config import (
    DEFAULTS, ConfigError, Duration, OneOf, Size, auth_provider, check_driver_params, disabled_plugins,
    Secret, mask_secrets, parse_addr, read_config, storage_driver, text_setting, validate,
)


def load(tmp_path, text: str | None = None, env: dict | None = None, schemas: dict | None = None) -> dict:
    path = None
    if text is not None:
        path = tmp_path / "config.yml"
        path.write_text(text)
    return validate(read_config(str(path) if path else None, env or {}), schemas)


def problems(tmp_path, text=None, env=None, schemas=None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env, schemas)
    return str(info.value)


# -- defaults and the file ------------------------------------------------------------


def test_defaults_validate_and_coerce(tmp_path):
    config = load(tmp_path)
    assert config["version"] == "0.1"
    assert storage_driver(config) == "filesystem"
    assert config["storage"]["filesystem"] == {"rootdirectory": "./data"}
    assert config["storage"]["maintenance"]["uploadpurging"]["age"] == 168 * 3600.0
    assert config["http"]["draintimeout"] == 30.0
    assert config["http"]["timeouts"] == {"header": 20.0, "body": 60.0, "idle": 75.0, "tlshandshake": 10.0}
    assert config["http"]["maxconnections"] == 10000
    assert config["validation"]["manifests"]["maxsize"] == 4 * 1024 * 1024
    assert config["http"]["headers"] == {"X-Content-Type-Options": ["nosniff"]}
    assert auth_provider(config) is None
    assert DEFAULTS["http"]["draintimeout"] == "30s"  # read_config copies, never mutates
    assert config["storage"]["maintenance"]["readonly"] == {"enabled": False}


def test_read_only_mode_from_file_and_environment(tmp_path):
    text = "storage:\n  maintenance:\n    readonly:\n      enabled: true\n"
    assert load(tmp_path, text)["storage"]["maintenance"]["readonly"]["enabled"] is True
    env = {"CARGOHOLD_STORAGE_MAINTENANCE_READONLY_ENABLED": "false"}
    assert load(tmp_path, text, env)["storage"]["maintenance"]["readonly"]["enabled"] is False
    assert "storage.maintenance.readonly.enabled: expected a boolean, got 'maybe'" in problems(
        tmp_path, "storage:\n  maintenance:\n    readonly:\n      enabled: maybe\n")


def test_yaml_deep_merges_over_defaults(tmp_path):
    config = load(tmp_path, """
version: 0.1
http:
  addr: 127.0.0.1:5001
  headers:
    Strict-Transport-Security: [max-age=31536000]
storage:
  delete:
    enabled: true
log:
""")
    assert config["http"]["addr"] == "127.0.0.1:5001"
    assert config["http"]["draintimeout"] == 30.0
    assert config["http"]["headers"] == {"X-Content-Type-Options": ["nosniff"],
                                         "Strict-Transport-Security": ["max-age=31536000"]}
    assert config["storage"]["delete"]["enabled"] is True
    assert config["storage"]["redirect"]["disable"] is False
    assert config["log"]["level"] == "info"  # `log:` left empty keeps the defaults


def test_file_naming_another_driver_drops_the_default(tmp_path):
    config = load(tmp_path, "storage:\n  s3:\n    bucket: b\n  delete: {enabled: true}\n")
    assert storage_driver(config) == "s3"
    assert "filesystem" not in config["storage"]
    assert config["storage"]["s3"] == {"bucket": "b"}


def test_driver_without_parameters_and_string_form(tmp_path):
    assert storage_driver(load(tmp_path, "storage:\n  inmemory:\n")) == "inmemory"
    assert storage_driver(load(tmp_path, "storage: inmemory\n")) == "inmemory"


def test_auth_provider_from_file(tmp_path):
    config = load(tmp_path, "auth:\n  htpasswd: {realm: r, path: /p}\n")
    assert auth_provider(config) == "htpasswd"


def test_overrides_replace_the_files_driver_and_provider(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("storage:\n  s3: {bucket: b}\nauth:\n  token: {realm: r}\nhttp:\n  addr: ':6000'\n")
    config = validate(read_config(str(path), {}, overrides={"storage": {"inmemory": {}}, "auth": "htpasswd"}))
    assert storage_driver(config) == "inmemory" and "s3" not in config["storage"]
    assert config["auth"] == {"htpasswd": {}}
    assert config["http"]["addr"] == ":6000"


@pytest.mark.parametrize("text, expected", [
    ("http: [1\n", ":1:"),  # the file and line are named
    ("- a\n- b\n", "top level must be a mapping"),
    ("\tkey: value\n", "invalid YAML"),
])
def test_bad_yaml_names_the_file(tmp_path, text, expected):
    message = problems(tmp_path, text)
    assert str(tmp_path / "config.yml") in message
    assert expected in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yml: cannot read the file"):
        read_config(str(tmp_path / "nope.yml"), {})


def test_empty_file_is_defaults(tmp_path):
    assert load(tmp_path, "") == load(tmp_path)


# -- environment -----------------------------------------------------------------------


def test_env_overrides_file_and_coerces_by_schema(tmp_path):
    config = load(tmp_path, "http:\n  addr: ':6000'\n", env={
        "CARGOHOLD_HTTP_ADDR": "127.0.0.1:5001",
        "CARGOHOLD_STORAGE_DELETE_ENABLED": "true",
        "CARGOHOLD_HTTP_WORKERS": "4",
        "CARGOHOLD_HTTP_DRAINTIMEOUT": "1m30s",
        "CARGOHOLD_HTTP_SECRET": "0123",
        "CARGOHOLD_PLUGINS_DISABLED": "a, b",
        "CARGOHOLD_VALIDATION_MANIFESTS_MAXSIZE": "512k",
        "CARGOHOLD_CONFIG": "/ignored.yml",
        "CARGOHOLD_TRACE": "1",
        "OTHER_HTTP_ADDR": "ignored",
    })
    assert config["http"]["addr"] == "127.0.0.1:5001"
    assert config["storage"]["delete"]["enabled"] is True
    assert config["http"]["workers"] == 4
    assert config["http"]["draintimeout"] == 90.0
    assert config["http"]["secret"] == "0123"  # a str in the schema stays a str
    assert config["plugins"]["disabled"] == ["a", "b"]
    assert config["validation"]["manifests"]["maxsize"] == 512 * 1024


def test_env_naming_a_driver_replaces_the_default(tmp_path):
    config = load(tmp_path, env={"CARGOHOLD_STORAGE_S3_BUCKET": "b", "CARGOHOLD_STORAGE_S3_REGION": "r"})
    assert storage_driver(config) == "s3"
    assert config["storage"]["s3"] == {"bucket": "b", "region": "r"}
    assert "filesystem" not in config["storage"]


def test_env_sets_the_default_driver(tmp_path):
    config = load(tmp_path, env={"CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x"})
    assert config["storage"]["filesystem"] == {"rootdirectory": "/x"}


def test_env_driver_conflicting_with_file_is_an_error(tmp_path):
    message = problems(tmp_path, "storage:\n  inmemory: {}\n",
                       env={"CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x"})
    assert "more than one storage driver configured (inmemory, filesystem)" in message
    assert "CARGOHOLD_STORAGE=<name>" in message


def test_env_selector_picks_the_driver(tmp_path):
    text = "storage:\n  s3: {bucket: b}\n"
    config = load(tmp_path, text, env={"CARGOHOLD_STORAGE": "filesystem",
                                       "CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x"})
    assert storage_driver(config) == "filesystem"
    assert set(config["storage"]) == {"filesystem", "delete", "redirect", "maintenance", "cache", "listing"}
    config = load(tmp_path, text, env={"CARGOHOLD_STORAGE": "s3", "CARGOHOLD_STORAGE_S3_REGION": "r"})
    assert config["storage"]["s3"] == {"bucket": "b", "region": "r"}
    assert storage_driver(load(tmp_path, env={"CARGOHOLD_STORAGE": "inmemory"})) == "inmemory"


def test_env_auth_selector(tmp_path):
    text = "auth:\n  htpasswd: {realm: r}\n"
    assert auth_provider(load(tmp_path, text, env={"CARGOHOLD_AUTH": ""})) is None
    assert auth_provider(load(tmp_path, text, env={"CARGOHOLD_AUTH": "token"})) == "token"
    message = problems(tmp_path, text, env={"CARGOHOLD_AUTH_TOKEN_REALM": "x"})
    assert "more than one auth provider configured (htpasswd, token)" in message


def test_env_reaches_existing_keys_with_underscores(tmp_path):
    config = load(tmp_path, "storage:\n  azure:\n    max_retries: 3\n",
                  env={"CARGOHOLD_STORAGE_AZURE_MAX_RETRIES": "10"})
    assert config["storage"]["azure"]["max_retries"] == "10"  # no schema: passed through


def test_env_into_a_value_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="CARGOHOLD_HTTP_ADDR_HOST: 'http.addr' is a value"):
        read_config(None, {"CARGOHOLD_HTTP_ADDR_HOST": "x"})
    with pytest.raises(ConfigError, match="CARGOHOLD_HTTP: 'http' is a section"):
        read_config(None, {"CARGOHOLD_HTTP": "x"})


def test_env_errors_name_the_variable(tmp_path):
    message = problems(tmp_path, env={"CARGOHOLD_STORAGE_DELETE_ENABLED": "maybe"})
    assert message == ("config: storage.delete.enabled: expected a boolean, got 'maybe' "
                       "(set by CARGOHOLD_STORAGE_DELETE_ENABLED)")


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("storage:\n  delete:\n    enabled: maybe\n", "config: storage.delete.enabled: expected a boolean, got 'maybe'"),
    ("http:\n  workers: many\n", "http.workers: expected a number of workers"),
    ("http:\n  draintimeout: soon\n", "http.draintimeout: expected a duration such as 30s"),
    ("validation:\n  manifests:\n    maxsize: big\n", "validation.manifests.maxsize: expected a size"),
    ("log:\n  level: verbose\n", "log.level: expected one of error, warn, warning, info, debug, got 'verbose'"),
    ("log:\n  formatter: logfmt\n", "log.formatter: expected one of text, json"),
    ("http:\n  addr: localhost\n", "http.addr: expected host:port"),
    ("http:\n  addr: ':99999'\n", "http.addr: the port must be a number from 0 to 65535"),
    ("http:\n  addr: '::1:5000'\n", "http.addr: an IPv6 host needs brackets"),
    ("http: 5\n", "http: expected a section"),
    ("http:\n  tls:\n    certificate: /c.pem\n", "http.tls.key: required when TLS is configured"),
    ("http:\n  prefix: v2\n", "http.prefix: must start with '/'"),
    ("storage:\n  delete: {enabled: true}\n  filesystem:\n  s3: {}\n", "more than one storage driver"),
    ("storage:\n  rootdirectory: /x\n", "storage.rootdirectory: expected a mapping"),
    ("version: x\n", "version: expected major.minor"),
    ("plugins:\n  disabled: 5\n", "plugins.disabled: expected a list, got 5"),
    ("http:\n  timeouts:\n    header: soon\n", "http.timeouts.header: expected a duration such as 30s"),
    ("http:\n  timeouts:\n    idle: 0\n", "http.timeouts.idle: must be more than zero, got 0s"),
    ("http:\n  timeouts:\n    tlshandshake: 0s\n", "http.timeouts.tlshandshake: must be more than zero"),
    ("http:\n  maxconnections: 0\n", "http.maxconnections: must be at least 1, got 0"),
    ("http:\n  maxconnections: lots\n", "http.maxconnections: expected an integer"),
    ("http:\n  timeouts:\n    read: 5s\n", "unknown key 'http.timeouts.read'"),
])
def test_errors_name_the_key(tmp_path, text, expected):
    assert expected in problems(tmp_path, text)


def test_no_storage_driver(tmp_path):
    with pytest.raises(ConfigError, match="storage: no storage driver configured"):
        validate({**read_config(None, {}), "storage": {"delete": {"enabled": True}}})


@pytest.mark.parametrize("text, expected", [
    ("http:\n  adress: ':5000'\n", "unknown key 'http.adress' (did you mean 'http.addr'?)"),
    ("storage:\n  delete:\n    enable: true\n",
     "unknown key 'storage.delete.enable' (did you mean 'storage.delete.enabled'?)"),
    ("htpp: {}\n", "unknown key 'htpp' (did you mean 'http'?)"),
    ("log:\n  disabled: true\n", "unknown key 'log.disabled' (did you mean 'log.accesslog.disabled'?)"),
    ("redis: {addr: 'x:1'}\n", "unknown key 'redis': a reference-registry option cargohold does not support"),
    ("storage:\n  cache: {blobdescriptor: inmemory}\n", "unknown key 'storage.cache.blobdescriptor': a reference-registry"),
])
def test_unknown_keys_with_suggestions(tmp_path, text, expected):
    assert expected in problems(tmp_path, text)


def test_all_problems_reported_at_once(tmp_path):
    error = pytest.raises(ConfigError, load, tmp_path, "http:\n  adress: x\n  workers: x\nlog:\n  level: x\n")
    assert len(error.value.problems) == 3


def test_plugin_schemas_validate_their_sections(tmp_path):
    schemas = {"storage.s3": {"bucket": str, "chunksize": Size, "secure": bool, "timeout": Duration}}
    config = load(tmp_path, env={"CARGOHOLD_STORAGE_S3_BUCKET": "b", "CARGOHOLD_STORAGE_S3_CHUNKSIZE": "5MiB",
                                 "CARGOHOLD_STORAGE_S3_SECURE": "no", "CARGOHOLD_STORAGE_S3_TIMEOUT": "1500ms"},
                  schemas=schemas)
    assert config["storage"]["s3"] == {"bucket": "b", "chunksize": 5 << 20, "secure": False, "timeout": 1.5}
    message = problems(tmp_path, "storage:\n  s3: {bucket: b, buckit: c}\n", schemas=schemas)
    assert "unknown key 'storage.s3.buckit' (did you mean 'storage.s3.bucket'?)" in message
    # A driver with no contributed schema passes through untouched.
    assert load(tmp_path, "storage:\n  gcs: {anything: [1, 2]}\n")["storage"]["gcs"] == {"anything": [1, 2]}


def test_plugin_schema_for_own_sections_and_value_types(tmp_path):
    schemas = {"reporting.sentry": {"dsn": str, "rate": float, "env": OneOf("prod", "dev")},
               "plugins.tagpolicy": {"immutable": list, "max": int}}
    config = load(tmp_path, """
reporting:
  sentry: {dsn: 'https://x', rate: '0.5', env: PROD}
  other: {free: form}
plugins:
  tagpolicy: {immutable: 'v*, latest', max: '3'}
""", schemas=schemas)
    assert config["reporting"]["sentry"] == {"dsn": "https://x", "rate": 0.5, "env": "prod"}
    assert config["reporting"]["other"] == {"free": "form"}
    assert config["plugins"]["tagpolicy"] == {"immutable": ["v*", "latest"], "max": 3}
    assert "reporting.sentry.rate: expected a number, got 'fast'" in problems(
        tmp_path, "reporting:\n  sentry: {rate: fast}\n", schemas=schemas)


def test_validate_is_idempotent(tmp_path):
    config = load(tmp_path, env={"CARGOHOLD_HTTP_WORKERS": "auto"})
    assert config["http"]["workers"] == 0
    assert validate(config) == config
    # ...and survives another pass through read_config as overrides.
    assert validate(read_config(None, {}, overrides=config)) == config


def test_secret_values_are_not_echoed(tmp_path):
    message = problems(tmp_path, "storage:\n  s3: {secretkey: [oops]}\n",
                       schemas={"storage.s3": {"secretkey": str}})
    assert "storage.s3.secretkey: expected a string, got a list" in message
    message = problems(tmp_path, "http:\n  secret: true\n")
    assert "hidden" in message and "True" not in message


# -- value types and helpers -------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (4194304, 4194304), ("4MiB", 4 << 20), ("4M", 4 << 20), ("4 mib", 4 << 20), ("512k", 512 << 10),
    ("1KB", 1000), ("2GB", 2 * 10**9), ("1.5k", 1536), ("10", 10), ("10B", 10), ("1Ti", 1 << 40),
])
def test_size(value, expected):
    assert Size.coerce(value) == expected


@pytest.mark.parametrize("value", ["big", "-1", -1, "4 XB", True, 1.5, None])
def test_size_rejects(value):
    with pytest.raises(ValueError, match="expected a size"):
        Size.coerce(value)


@pytest.mark.parametrize("value, expected", [
    ("168h", 604800.0), ("30s", 30.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("250ms", 0.25),
    ("2h45m", 9900.0), (30, 30.0), (0.5, 0.5), ("45", 45.0), ("100us", 1e-4),
])
def test_duration(value, expected):
    assert Duration.coerce(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["soon", "-1s", "1x", "h", "1h 30m", -5, False, [1]])
def test_duration_rejects(value):
    with pytest.raises(ValueError, match="expected a duration"):
        Duration.coerce(value)


@pytest.mark.parametrize("addr, expected", [
    (":5000", ("", 5000)), ("127.0.0.1:5001", ("127.0.0.1", 5001)),
    ("localhost:0", ("localhost", 0)), ("[::1]:5000", ("::1", 5000)), ("[::]:80", ("::", 80)),
])
def test_parse_addr(addr, expected):
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["5000", "host:", "host:http", "::1:5000", None])
def test_parse_addr_rejects(addr):
    with pytest.raises(ValueError):
        parse_addr(addr)


def test_mask_secrets_follows_the_schemas_secret_type():
    class Token:
        secret = True

        @classmethod
        def coerce(cls, value):
            return str(value)

    schemas = {"reporting.example": {"licence": Secret, "project": str, "dsn": Token},
               "storage.example": {"key": Secret, "secretive": str}}
    config = {"reporting": {"example": {"licence": "l1", "project": "p", "dsn": "https://k@h/1"}},
              "storage": {"example": {"key": "k", "secretive": "visible"}}}
    masked = mask_secrets(config, schemas)
    assert masked["reporting"]["example"] == {"licence": "******", "project": "p", "dsn": "******"}
    # declared not secret: shown, whatever its name says
    assert masked["storage"]["example"] == {"key": "******", "secretive": "visible"}


def test_secret_values_are_hidden_in_errors():
    class Dsn:
        secret = True

        @classmethod
        def coerce(cls, value):
            raise ValueError("expected a DSN")

    with pytest.raises(ConfigError) as info:
        validate({"reporting": {"example": {"dsn": "hunter2"}}}, {"reporting.example": {"dsn": Dsn}})
    assert "reporting.example.dsn: expected a DSN, got a hidden value" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_mask_secrets():
    config = {"http": {"secret": "s3cr3t", "addr": ":5000"},
              "storage": {"s3": {"secretkey": "k", "accesskey": "a"}, "azure": {"accountkey": ""}},
              "notifications": {"endpoints": [{"headers": {"password": ["p"]}}]}}
    masked = mask_secrets(config)
    assert masked["http"] == {"secret": "******", "addr": ":5000"}
    assert masked["storage"]["s3"] == {"secretkey": "******", "accesskey": "a"}
    assert masked["storage"]["azure"] == {"accountkey": ""}  # unset stays visibly unset
    assert masked["notifications"]["endpoints"][0]["headers"]["password"] == "******"
    assert config["http"]["secret"] == "s3cr3t"


def test_disabled_plugins_from_raw_config():
    assert disabled_plugins(read_config(None, {})) == []
    assert disabled_plugins(read_config(None, {"CARGOHOLD_PLUGINS_DISABLED": "a,b"})) == ["a", "b"]
    with pytest.raises(ConfigError, match="plugins.disabled: expected a list"):
        disabled_plugins({"plugins": {"disabled": 3}})


def test_driver_params_are_coerced_and_problems_start_with_the_key():
    schema = {"bucket": str, "chunksize": Size, "tls": {"verify": bool}}
    values = check_driver_params({"bucket": " b ", "chunksize": "5MiB", "tls": {"verify": "false"}},
                                 schema, "storage.x")
    assert values == {"bucket": " b ", "chunksize": 5 << 20, "tls": {"verify": False}}
    assert text_setting(values, "bucket") == "b" and text_setting({"bucket": "  "}, "bucket") is None
    assert check_driver_params(None, schema, "storage.x") == {}
    for params, problem in [
        ({"chunksize": "lots"}, "storage.x.chunksize: expected a size"),
        ({"bukket": "b"}, "storage.x.bukket: unknown key (did you mean 'storage.x.bucket'?)"),
        ({"tls": {"verfy": True}}, "storage.x.tls.verfy: unknown key"),
    ]:
        with pytest.raises(ValueError) as info:
            check_driver_params(params, schema, "storage.x")
        assert str(info.value).startswith(problem), str(info.value)
