"""Headless Chromium for the catalog's browser tests: Debian's ``chromium``
driven by its ``chromedriver`` through selenium, never a downloaded browser,
and started with every background connection to the outside switched off."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import pytest

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
INSTALL_HINT = ("install Debian's chromium and chromium-driver: `apt-get install -y chromium chromium-driver` "
                "(or run `sh .ci/system-deps test` as root), and selenium (`./dev test` installs it)")

#: No first-run, sync, component updates or other calls home; no GPU, no sandbox
#: (tests run as root in containers).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
         "--disable-domain-reliability", "--disable-client-side-phishing-detection",
         "--metrics-recording-only", "--password-store=basic", "--use-mock-keychain",
         # No name or address but the loopback one resolves: nothing outside is reachable.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1")


def _first(candidates, env_var: str) -> str:
    chosen = os.environ.get(env_var)
    for path in ([chosen] if chosen else []) + list(candidates):
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail(f"{candidates[0]} not found; {INSTALL_HINT}", pytrace=False)


class Browser:
    """One headless Chromium with a fresh profile; ``close()`` ends it and
    removes the profile."""

    def __init__(self, width: int = 1280, height: int = 900):
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            pytest.fail(f"selenium is not installed; {INSTALL_HINT}", pytrace=False)
        # Given the driver's path, selenium never runs selenium-manager (which
        # would download a browser): pointed at /bin/false, it would fail the
        # test if it ever did.
        os.environ["SE_MANAGER_PATH"] = "/bin/false"
        os.environ["SE_OFFLINE"] = "true"
        binary = _first(CHROMIUM, "CARGOHOLD_TEST_CHROMIUM")
        driver_path = _first(CHROMEDRIVER, "CARGOHOLD_TEST_CHROMEDRIVER")
        self.profile = tempfile.mkdtemp(prefix="cargohold-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        self.driver = webdriver.Chrome(options=options, service=Service(driver_path, log_output=self.log_path))
        self.driver.set_page_load_timeout(30)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def requested_urls(self) -> list[str]:
        """Every URL the browser sent a request for since the last call
        (from its performance log)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def cdp(self, command: str, params: dict | None = None) -> dict:
        return self.driver.execute_cdp_cmd(command, params or {})

    def screenshot(self, path: str, width: int, height: int | None = None, dark: bool = False) -> None:
        """A PNG of the current page at ``width`` CSS pixels (the whole page
        when ``height`` is ``None``), in the light or dark theme."""
        self.cdp("Emulation.setEmulatedMedia",
                 {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
        full = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.cdp("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": min(height or full, 1400), "deviceScaleFactor": 1, "mobile": width < 600})
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.driver.save_screenshot(path)
        finally:
            self.cdp("Emulation.clearDeviceMetricsOverride")
            self.cdp("Emulation.setEmulatedMedia", {"features": []})


def push(client, base: str, repository: str, reference: str, manifest: dict, blobs: list[bytes],
         headers: dict | None = None) -> str:
    """Push ``blobs`` (monolithic uploads) and then ``manifest`` as
    ``reference`` over the registry's HTTP API; return the manifest's digest.
    ``client`` is ``requests`` (``base`` the server's URL) or a Flask test
    client (``base`` empty): both take ``post``/``put`` with ``data`` and
    ``headers`` and answer with a ``status_code``."""
    headers = dict(headers or {})
    for data in blobs:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = client.post(f"{base}/v2/{repository}/blobs/uploads/?digest={digest}", data=data,
                        headers={**headers, "Content-Type": "application/octet-stream"})
        assert r.status_code == 201, (r.status_code, r.text if hasattr(r, "text") else r.get_data())
    raw = json.dumps(manifest).encode()
    r = client.put(f"{base}/v2/{repository}/manifests/{reference}", data=raw,
                   headers={**headers, "Content-Type": manifest["mediaType"]})
    assert r.status_code == 201, (r.status_code, r.text if hasattr(r, "text") else r.get_data())
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def descriptor(data: bytes, media_type: str) -> dict:
    """The OCI descriptor of ``data``."""
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
