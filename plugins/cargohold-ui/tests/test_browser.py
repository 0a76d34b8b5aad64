"""The catalog in a real headless Chromium against a live ``cargohold serve``
with htpasswd auth and access rules, holding images pushed by skopeo and a
referrer pushed over the API.  Screenshots of the main pages go to
``docs/images/ui-*.png``."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import requests

from cargohold.testing.auth import basic
from cargohold.testing.images import build_image, build_index, tagged
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo
from cargohold_ui.testing import Browser, descriptor, push

IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"
SBOM_TYPE = "application/spdx+json"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"


def push_referrer(url: str, auth: dict, repository: str, subject: dict, artifact_type: str, payload: bytes) -> str:
    """Push an OCI 1.1 artifact (empty config, one blob) whose subject is
    ``subject``; return its digest."""
    empty = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": descriptor(empty, "application/vnd.oci.empty.v1+json"),
        "layers": [descriptor(payload, artifact_type)],
        "subject": {"mediaType": subject["mediaType"], "digest": subject["digest"], "size": subject["size"]},
        "annotations": {"org.opencontainers.image.created": "2026-01-02T03:04:05Z"},
    }
    raw = json.dumps(manifest).encode()
    return push(requests, url, repository, "sha256:" + hashlib.sha256(raw).hexdigest(), manifest, [empty, payload],
                auth)


@pytest.fixture(scope="module")
def site(tmp_path_factory, auth_section):
    tmp = tmp_path_factory.mktemp("ui")
    config = tmp / "config.yml"
    config.write_text(json.dumps({"auth": auth_section(tmp), "ui": {"enabled": True, "delete": True}}))
    with LiveRegistry(config_file=str(config)) as registry:
        home = tmp / "skopeo"
        home.mkdir()
        skopeo = Skopeo(find_skopeo(), home, registry)
        image = build_image(tmp / "image", tag="1.0", layers=3)
        index = build_index(tmp / "index", tag="multi", archs=("amd64", "arm64", "ppc64le"))
        pushes = [(image, "public/app", "1.0"), (index, "public/app", "multi"), (image, "public/tools", "1.0"),
                  (image, "private/secret", "1.0"), (image, "public/app", "0.9")]
        for source, repo, tag in pushes:
            skopeo.copy(source.ref, skopeo.docker(repo, tag), "--all", "--dest-tls-verify=false",
                        "--dest-creds", "alice:wonderland")
        auth = basic("alice", "wonderland")
        subject = tagged(tmp / "image", "1.0")
        sbom = b'{"spdxVersion":"SPDX-2.3"}'
        registry.sbom = push_referrer(registry.url, auth, "public/app", subject, SBOM_TYPE, sbom)
        registry.signature = push_referrer(registry.url, auth, "public/app", subject, SIGNATURE_TYPE, b"signed")
        registry.image_digest = subject["digest"]
        registry.host = registry.url.split("://")[1]
        try:
            yield registry
        finally:
            registry.stop()
            registry.cleanup()


@pytest.fixture(scope="module")
def anonymous():
    browser = Browser()
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def alice(site):
    browser = Browser()
    # The browser's own Basic login: the sign-in page answers 401 with the
    # provider's challenge; credentials in the URL answer it as a person would
    # in the dialog, and the browser then sends them with every catalog page.
    host = site.host
    browser.driver.get(f"http://alice:wonderland@{host}/ui/login")
    yield browser
    browser.close()


def wait_for(condition, timeout: float = 15.0):
    """Poll ``condition`` until it is true.  The page's script redraws lists
    as it filters, so an element read a moment ago may be gone: that counts
    as "not yet" (a busy machine makes it likelier, not different)."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except StaleElementReferenceException:
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def texts(browser: Browser, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, selector)]


def test_repository_list_and_search(site, alice):
    from selenium.webdriver.common.by import By

    alice.driver.get(f"{site.url}/ui/")
    assert texts(alice, "#user") == ["alice"]
    assert texts(alice, "a.repo") == ["private/secret", "public/app", "public/tools"]
    alice.screenshot(str(IMAGES / "ui-repositories.png"), 1000, 520)
    search = alice.driver.find_element(By.ID, "search")
    search.send_keys("too")
    assert wait_for(lambda: texts(alice, "a.repo") == ["public/tools"]), texts(alice, "a.repo")
    assert "q=too" in alice.driver.current_url
    search.clear()
    search.send_keys("zzz")
    assert wait_for(lambda: "No repository matches" in alice.driver.find_element(By.ID, "repository-rows").text)
    # Pagination: two at a time, then the rest.
    alice.driver.get(f"{site.url}/ui/?n=2")
    assert texts(alice, "a.repo") == ["private/secret", "public/app"]
    alice.driver.find_element(By.ID, "next").click()
    assert texts(alice, "a.repo") == ["public/tools"]


def test_anonymous_sees_only_what_anonymous_may_pull(site, anonymous):
    from selenium.webdriver.common.by import By

    anonymous.driver.get(f"{site.url}/ui/")
    assert texts(anonymous, "a.repo") == ["public/app", "public/tools"]
    assert texts(anonymous, "#login") == ["Sign in"]
    anonymous.driver.get(f"{site.url}/ui/r/private/secret")
    assert "Not found" in anonymous.driver.title
    # Nothing of it but the address the visitor typed (in the sign-in link).
    assert "private/secret" not in anonymous.driver.find_element(By.TAG_NAME, "main").text
    anonymous.driver.get(f"{site.url}/ui/r/private/secret/-/manifest/1.0")
    assert "Not found" in anonymous.driver.title
    # No delete for anonymous callers.
    anonymous.driver.get(f"{site.url}/ui/r/public/app")
    assert texts(anonymous, "a.tag") == ["0.9", "1.0", "multi"]
    assert texts(anonymous, "a.delete") == []


def test_tag_list(site, alice):
    from selenium.webdriver.common.by import By

    alice.driver.get(f"{site.url}/ui/r/public/app")
    assert texts(alice, "a.tag") == ["0.9", "1.0", "multi"]
    rows = {r.get_attribute("data-tag"): r.text for r in alice.driver.find_elements(By.CSS_SELECTOR, "#tags tbody tr")}
    assert "linux/amd64" in rows["1.0"] and "image" in rows["1.0"] and "KiB" in rows["1.0"]
    assert all(p in rows["multi"] for p in ("linux/amd64", "linux/arm64", "linux/ppc64le")) and "index" in rows["multi"]
    assert site.image_digest.partition(":")[2][:12] in rows["1.0"]
    assert " UTC" in rows["1.0"]
    alice.screenshot(str(IMAGES / "ui-tags.png"), 1000, 420)
    # Newest push first: 0.9 was pushed last.
    alice.driver.find_element(By.ID, "sort-pushed").click()
    assert texts(alice, "a.tag")[0] == "0.9"
    # Sorting by a column within the page, in the browser.
    header = alice.driver.find_elements(By.CSS_SELECTOR, "#tags th")[0]
    header.click()
    assert texts(alice, "a.tag") == ["0.9", "1.0", "multi"]
    header.click()
    assert texts(alice, "a.tag") == ["multi", "1.0", "0.9"]


def test_index_platforms(site, alice):
    from selenium.webdriver.common.by import By

    alice.driver.get(f"{site.url}/ui/r/public/app/-/manifest/multi")
    assert texts(alice, "#platforms span.platform") == ["linux/amd64", "linux/arm64", "linux/ppc64le"]
    alice.screenshot(str(IMAGES / "ui-index.png"), 1000)
    alice.driver.find_elements(By.CSS_SELECTOR, "#platforms a.child")[1].click()
    assert "linux/arm64" in alice.driver.find_element(By.ID, "config").text


def test_manifest_layers_config_referrers(site, alice, anonymous):
    from selenium.webdriver.common.by import By

    for browser in (alice, anonymous):
        browser.driver.get(f"{site.url}/ui/r/public/app/-/manifest/1.0")
        assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#layers tr.layer")) == 3
        config = browser.driver.find_element(By.ID, "config").text
        assert "linux/amd64" in config and "2024-01-01T00:00:00Z" in config and "test.seed" in config
        assert texts(browser, "#referrers h3") == [SBOM_TYPE, SIGNATURE_TYPE]
    alice.screenshot(str(IMAGES / "ui-manifest.png"), 1000)
    alice.screenshot(str(IMAGES / "ui-manifest-dark-phone.png"), 390, 844, dark=True)
    # A referrer's own page: an artifact, its subject's digest in the document.
    alice.driver.find_elements(By.CSS_SELECTOR, "#referrers tr.referrer a")[0].click()
    summary = alice.driver.find_element(By.ID, "summary").text
    assert SBOM_TYPE in summary and "artifact" in summary


def test_copy_command_button(site, alice):
    from selenium.webdriver.common.by import By

    alice.cdp("Browser.grantPermissions", {"origin": site.url, "permissions": ["clipboardReadWrite",
                                                                               "clipboardSanitizedWrite"]})
    alice.driver.get(f"{site.url}/ui/r/public/app/-/manifest/multi")
    expected = {
        "docker": f"docker pull {site.host}/public/app:multi",
        "skopeo": f"skopeo copy --src-tls-verify=false --all docker://{site.host}/public/app:multi oci:app:multi",
        "oras": f"oras pull --plain-http {site.host}/public/app:multi",
    }
    for tool, line in expected.items():
        assert alice.driver.find_element(By.ID, f"cmd-{tool}").text == line
    button = alice.driver.find_element(By.ID, "copy-skopeo")
    button.click()
    assert wait_for(lambda: button.text == "Copied"), button.text
    copied = alice.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('error: ' + e));")
    assert copied == expected["skopeo"]


def test_security_headers_and_no_outside_resources(site, alice):
    r = requests.get(f"{site.url}/ui/", timeout=10)
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    alice.requested_urls()
    alice.driver.get(f"{site.url}/ui/r/public/app/-/manifest/1.0")
    alice.driver.get(f"{site.url}/ui/?q=app")
    requested = alice.requested_urls()
    assert f"{site.url}/ui/static/ui.js" in requested and f"{site.url}/ui/static/ui.css" in requested
    assert [u for u in requested if not u.startswith((site.url, "data:"))] == []
    alice.driver.get(f"{site.url}/ui/r/public/app/-/manifest/1.0")
    sources = alice.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat(Array.from(document.querySelectorAll('[src],[href]')).map(e => e.src || e.href))")
    outside = [s for s in sources if s and not s.startswith((site.url, "data:"))]
    assert outside == []
    assert "wonderland" not in alice.driver.page_source
    # The browser reported no CSP violation or script error.
    logs = alice.driver.get_log("browser")
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []


def test_delete_a_tag_with_confirmation(site, alice):
    from selenium.webdriver.common.by import By

    alice.driver.get(f"{site.url}/ui/r/public/app")
    row = alice.driver.find_element(By.CSS_SELECTOR, "#tags tr[data-tag='0.9']")
    row.find_element(By.CSS_SELECTOR, "a.delete").click()
    assert "Delete the tag" in alice.driver.find_element(By.TAG_NAME, "main").text
    alice.driver.find_element(By.ID, "confirm-delete").click()
    assert texts(alice, "a.tag") == ["1.0", "multi"]
    r = requests.get(f"{site.url}/v2/public/app/tags/list", headers=basic("alice", "wonderland"), timeout=10)
    assert r.json()["tags"] == ["1.0", "multi"]
