"""The documentation site: a strict offline build, generated references that
cover the code, and a README that stays a front page whose links resolve."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cargohold import config as config_mod
from cargohold import docgen, hookspecs
from cargohold.config import ANY_KEY, PROXY_UPSTREAM_SCHEMA, ConfigError, read_config, validate
from cargohold.events.endpoints import ENDPOINT_SCHEMA
from cargohold.plugins import build_plugin_manager

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


@pytest.fixture(scope="module")
def reference(pm) -> str:
    return docgen.config_reference(pm)


def test_strict_build_succeeds_offline(tmp_path):
    """``mkdocs build --strict``: a broken link or anchor, a page missing from
    the nav or a nav entry without a page fails it (mkdocs.yml's
    ``validation``).  The generated pages are in the output."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    assert mkdocs.exists(), "mkdocs is missing: ./dev test installs it (the test extra of setup.cfg)"
    # Any attempt to reach the network goes to a closed port and fails the build.
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HTTP_PROXY": closed, "HTTPS_PROXY": closed,
           "http_proxy": closed, "https_proxy": closed, "NO_PROXY": "", "no_proxy": ""}
    proc = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    config_page = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text()
    assert "storage.s3.secretkey" in config_page and "CARGOHOLD_HTTP_ADDR" in config_page
    hooks_page = (tmp_path / "site" / "plugins" / "hooks" / "index.html").read_text()
    assert "cargohold_before_manifest_put" in hooks_page
    # Pages load nothing from elsewhere: no web fonts, scripts or styles off the site.
    home = (tmp_path / "site" / "index.html").read_text()
    assert not re.findall(r'<(?:link|script)[^>]+(?:href|src)="https?://', home)


def test_strict_build_fails_on_a_broken_anchor(tmp_path):
    """The strictness is real: a copy of the docs with one bad anchor fails."""
    import shutil

    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "development.md", "a") as f:
        f.write("\nSee [nothing](features.md#no-such-heading).\n")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    proc = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=tmp_path,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "no-such-heading" in proc.stderr


def _accepted_paths(schema: dict, prefix: str = "") -> list[str]:
    """Every dotted key a schema tree accepts (free-form keys as <name>),
    walked here independently of the generator."""
    paths = []
    for key, sub in schema.items():
        dotted = (f"{prefix}." if prefix else "") + ("<name>" if key == ANY_KEY else key)
        if isinstance(sub, dict):
            if not sub:
                paths.append(dotted)
            paths.extend(_accepted_paths(sub, dotted))
        else:
            paths.append(dotted)
    return paths


def _reference_keys(reference: str) -> list[str]:
    return re.findall(r"^\| `([^`]+)` \|", reference, re.M)


def test_reference_names_every_key_the_running_code_accepts(pm, reference):
    schemas = config_mod.config_schemas(pm.hook.cargohold_config_schema())
    tree = config_mod._schema_tree(schemas)
    listed = set(_reference_keys(reference))
    accepted = _accepted_paths(tree)
    accepted += _accepted_paths(ENDPOINT_SCHEMA, "notifications.endpoints[]")
    accepted += _accepted_paths(PROXY_UPSTREAM_SCHEMA, "proxy.upstreams[]")
    from cargohold_notify_webhook.sink import SCHEMA as WEBHOOK_SCHEMA

    accepted += _accepted_paths(WEBHOOK_SCHEMA, "notifications.endpoints[]")
    missing = [p for p in accepted if p not in listed]
    assert not missing, f"keys the code accepts but the reference omits: {missing}"
    # The plugins of this checkout are all there, each credited.
    for section, dist in (("storage.s3.bucket", "cargohold-storage-s3"), ("auth.htpasswd.path", "cargohold-auth-htpasswd"),
                          ("tokenserver.signingkey", "cargohold-auth-token"), ("reporting.sentry.dsn",
                                                                              "cargohold-report-sentry"),
                          ("notifications.endpoints[].url", "cargohold-notify-webhook"),
                          ("sizelimit.maxbytes", "cargohold-size-limit")):
        row = next(line for line in reference.splitlines() if line.startswith(f"| `{section}` |"))
        assert dist in row, row


def test_every_key_in_the_reference_is_accepted_by_validation(reference):
    """The other direction: a config setting every listed key (to nothing,
    which takes the type's zero value) has no unknown key."""
    config: dict = {}
    for key in _reference_keys(reference):
        if "[]" in key or "<name>" in key:
            continue
        node = config
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node.setdefault(last, None)
    try:
        validate(config, config_mod.config_schemas(build_plugin_manager().hook.cargohold_config_schema()))
    except ConfigError as e:
        unknown = [p for p in e.problems if "unknown key" in p]
        assert not unknown, unknown


def test_environment_names_in_the_reference_set_their_keys(reference):
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|[^|]*\| `(CARGOHOLD_[A-Z0-9_]+)` \|", reference, re.M)
    assert len(rows) > 100
    for key, kind, var in rows:
        if kind.strip() in ("section", "mapping"):
            continue
        raw = read_config(None, environ={var: "1"})
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{var} does not set {key}"
            node = node[part]
        assert node == "1", (var, key, node)


def test_secret_keys_are_marked(reference):
    for key in ("storage.s3.secretkey", "proxy.password", "reporting.sentry.dsn", "http.secret"):
        row = next(line for line in reference.splitlines() if line.startswith(f"| `{key}` |"))
        assert "*secret*" in row, row


def test_hook_reference_documents_every_hookspec():
    page = docgen.hook_reference()
    marker = f"{hookspecs.hookspec.project_name}_spec"
    specs = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, marker)]
    assert len(specs) >= 12
    for name in specs:
        assert f"## `{name}`" in page
        first_line = inspect.cleandoc(getattr(hookspecs, name).__doc__).splitlines()[0]
        assert docgen._rst_to_markdown(first_line) in page
    assert "*firstresult*" in page  # cargohold_error_response


def test_the_plugins_overview_names_every_hook():
    """The overview's table of hooks is written by hand: it must not fall
    behind hookspecs.py."""
    overview = (ROOT / "docs" / "plugins" / "index.md").read_text()
    marker = f"{hookspecs.hookspec.project_name}_spec"
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(function, marker):
            assert f"`{name}(" in overview, f"docs/plugins/index.md does not list {name}"


def test_cli_writes_the_references(tmp_path):
    cargohold = Path(sys.executable).with_name("cargohold")
    for page in ("config-reference", "hook-reference"):
        out = tmp_path / f"{page}.md"
        subprocess.run([str(cargohold), page, "-o", str(out)], check=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")})
        assert out.read_text().startswith("# ")


# -- the README ---------------------------------------------------------------------


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) < 250, len(lines)
    text = README.read_text()
    for needed in ("./dev serve", "./dev test", "skopeo copy", "./dev docs", "## Writing a plugin"):
        assert needed in text


@pytest.mark.parametrize("page", [README, *sorted(ROOT.glob("plugins/*/README.md")),
                                  *sorted(ROOT.glob("contrib/**/README.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link)
        elif anchor and target.is_file() and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("readme", sorted(ROOT.glob("plugins/*/README.md")), ids=lambda p: p.parent.name)
def test_plugin_readmes_are_short_and_link_to_their_page(readme):
    text = readme.read_text()
    assert len(text.splitlines()) <= 40, "a plugin's README stays short: its documentation is under docs/"
    assert re.search(r"\]\(\.\./\.\./docs/[\w/.-]+\.md\)", text), "the README links to its page under docs/"
