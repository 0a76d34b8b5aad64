"""Headless Chromium for the catalog's browser tests: Debian's ``chromium``
driven by its ``chromedriver`` through selenium, never a downloaded browser,
and started with every background connection to the outside switched off."""

from __future__ import annotations

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
         "--metrics-recording-only", "--password-store=basic", "--use-mock-keychain")


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
        # Given both paths, selenium never runs selenium-manager; offline in case.
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
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        self.driver = webdriver.Chrome(options=options, service=Service(driver_path, log_output=self.log_path))
        self.driver.set_page_load_timeout(30)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

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
