"""The ``cargohold`` command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from cargohold import __version__
from cargohold.cli import main

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}


@pytest.fixture(autouse=True)
def no_cargohold_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CARGOHOLD_"):
            monkeypatch.delenv(name)


def run(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cargohold", *args], capture_output=True, text=True,
                          env={**CLEAN_ENV, **(env or {})}, timeout=timeout)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cargohold {__version__}"


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "config", "plugins", "purge-uploads"):
        assert command in out


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage: cargohold" in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("http:\n  adress: ':5000'\n", "cargohold: config: unknown key 'http.adress' (did you mean 'http.addr'?)"),
    ("storage:\n  delete:\n    enabled: maybe\n", "cargohold: config: storage.delete.enabled: expected a boolean"),
    ("http: [1\n", "invalid YAML"),
])
def test_serve_with_bad_config_exits_2_naming_the_key(tmp_path, text, expected):
    path = tmp_path / "config.yml"
    path.write_text(text)
    result = run("serve", "--config", str(path))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("log:\n  level: loud\n")
    result = run("serve", env={"CARGOHOLD_CONFIG": str(path)})
    assert result.returncode == 2
    assert "log.level: expected one of" in result.stderr
    result = run("serve", "--config", str(tmp_path / "missing.yml"))
    assert result.returncode == 2
    assert "missing.yml: cannot read the file" in result.stderr


def test_unknown_storage_driver_exits_2(tmp_path):
    result = run("serve", env={"CARGOHOLD_STORAGE": "nosuchdriver", "CARGOHOLD_HTTP_ADDR": "127.0.0.1:0"})
    assert result.returncode == 2, result.stderr
    assert "nosuchdriver" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_prints_effective_config_with_secrets_masked(capsys, monkeypatch, tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("http:\n  secret: topsecret\nstorage:\n  s3:\n    bucket: b\n    secretkey: sk\n")
    monkeypatch.setenv("CARGOHOLD_HTTP_ADDR", "127.0.0.1:6000")
    monkeypatch.setenv("CARGOHOLD_STORAGE_DELETE_ENABLED", "yes")
    assert main(["config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    config = yaml.safe_load(out)
    assert config["http"]["addr"] == "127.0.0.1:6000"
    assert config["storage"]["delete"]["enabled"] is True
    assert config["http"]["secret"] == "******"
    assert config["storage"]["s3"] == {"bucket": "b", "secretkey": "******"}
    assert "topsecret" not in out and "sk\n" not in out


def test_plugins_table_and_json(capsys):
    assert main(["plugins"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "HOOKS"]
    assert "cargohold.builtin.storage" in table
    assert main(["plugins", "--json"]) == 0
    plugins = json.loads(capsys.readouterr().out)
    builtin = {p["name"]: p for p in plugins}["cargohold.builtin.storage"]
    assert builtin["dist"] == "cargohold" and builtin["version"] == __version__
    assert "cargohold_storage_drivers" in builtin["hooks"]


def test_plugins_respects_disabled(capsys, monkeypatch):
    monkeypatch.setenv("CARGOHOLD_PLUGINS_DISABLED", "cargohold.builtin.maintenance")
    assert main(["plugins", "--json"]) == 0
    names = {p["name"] for p in json.loads(capsys.readouterr().out)}
    assert "cargohold.builtin.maintenance" not in names


def test_purge_uploads_dry_run(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY", str(tmp_path))
    assert main(["purge-uploads", "--dry-run", "--age", "1h"]) == 0
    assert "would purge 0 upload session(s) older than 3600s" in capsys.readouterr().err


def test_other_commands_do_not_import_gevent():
    code = "import sys; from cargohold.cli import main; main(['config']); assert 'gevent' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=CLEAN_ENV)
    assert result.returncode == 0, result.stderr


def test_serve_runs_the_real_app_and_stops_on_sigterm(tmp_path):
    log_path = tmp_path / "serve.log"
    env = {**CLEAN_ENV, "CARGOHOLD_HTTP_ADDR": "127.0.0.1:0", "CARGOHOLD_STORAGE": "inmemory"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cargohold", "serve"], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        port = None
        while port is None and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+) \(1 worker, storage: inmemory\)",
                          log_path.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        assert port, log_path.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        log = log_path.read_text()
        assert "MonkeyPatchWarning" not in log and "Traceback" not in log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- plugin commands (cargohold_cli_commands) -------------------------------------------

HELLO_PLUGIN = '''
import os
from cargohold import hookimpl

open(os.environ["HELLO_MARKER"], "a").write("imported\\n")


def run(args):
    from cargohold.cli import load_config

    config, _ = load_config(args.config)
    print(f"hello {args.name} from {config['storage']['filesystem']['rootdirectory']}")
    return 7


@hookimpl
def cargohold_cli_commands(subparsers, parents):
    p = subparsers.add_parser("hello", parents=parents, help="greet someone")
    p.add_argument("name")
    p.set_defaults(run=run)
'''


def run_with_plugins(tmp_path, plugins: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    from cargohold.testing.server import install_plugins

    directory = install_plugins(str(tmp_path / "plugins"), plugins)
    return run(*args, env={"PYTHONPATH": directory, "HELLO_MARKER": str(tmp_path / "marker"), **(env or {})})


def test_plugin_adds_a_command(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": "/srv/reg"}}}))
    proc = run_with_plugins(tmp_path, {"hello": HELLO_PLUGIN}, "hello", "--config", str(config), "world")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "hello world from /srv/reg\n"

    listed = run_with_plugins(tmp_path, {"hello": HELLO_PLUGIN}, "--help")
    assert listed.returncode == 0
    assert re.search(r"hello\s+greet someone", listed.stdout)


def test_plugin_command_config_errors_exit_2(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("http:\n  adress: x\n")
    proc = run_with_plugins(tmp_path, {"hello": HELLO_PLUGIN}, "hello", "-c", str(config), "world")
    assert proc.returncode == 2
    assert "cargohold: config: unknown key 'http.adress'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_disabled_plugin_adds_no_command(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"plugins": {"disabled": ["hello"]}}))
    proc = run_with_plugins(tmp_path, {"hello": HELLO_PLUGIN}, "hello", "world",
                            env={"CARGOHOLD_CONFIG": str(config)})
    assert proc.returncode == 2
    assert "invalid choice: 'hello'" in proc.stderr


def test_core_commands_do_not_load_plugins(tmp_path):
    proc = run_with_plugins(tmp_path, {"hello": HELLO_PLUGIN}, "gc", "--help")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "marker").exists()


def test_plugin_command_clashing_with_a_core_command_names_the_plugin(tmp_path):
    clash = HELLO_PLUGIN.replace('add_parser("hello"', 'add_parser("gc"')
    proc = run_with_plugins(tmp_path, {"clash": clash}, "--help")
    assert proc.returncode == 3
    assert "plugin 'clash' failed in cargohold_cli_commands" in proc.stderr
    assert "Traceback" not in proc.stderr
