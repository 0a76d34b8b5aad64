"""Azurite, the Azure Storage emulator, as a real process on loopback for
the tests, and the fixtures built on it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cargohold.testing.services import ServiceProcess, find_tool
from cargohold_storage_azure import create_driver

# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

REPO = Path(__file__).resolve().parents[3]
INSTALL_HINT = "run: sh .ci/system-deps test (installs Azurite with npm)"


class Azurite:
    """``azurite-blob`` on a free port, keeping its data in ``location`` so
    that it survives :meth:`stop` and :meth:`start`."""

    def __init__(self, binary: str, location: Path):
        self.location = location

        def command(port: int) -> list[str]:
            return [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
                    "--silent", "--disableTelemetry", "--skipApiVersionCheck"]

        self.process = ServiceProcess("azurite", command)
        self.url = f"http://127.0.0.1:{self.process.port}/{ACCOUNT}"

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def params(self, container: str | None = None, **extra) -> dict:
        """A ``storage.azure`` section for this emulator."""
        return {"accountname": ACCOUNT, "accountkey": KEY, "serviceurl": self.url,
                "container": container or new_container(), **extra}

    def connection_string(self) -> str:
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={self.url};"


class AzuriteBackend:
    """One container of the session's Azurite, for registries started with
    :attr:`env`.  :meth:`stop` and :meth:`start` stop and restart the
    emulator itself (same port, same data)."""

    def __init__(self, azurite, container: str):
        self.azurite = azurite
        self.params = azurite.params(container=container)
        self.env = {
            "CARGOHOLD_STORAGE": "azure",
            "CARGOHOLD_STORAGE_AZURE_ACCOUNTNAME": self.params["accountname"],
            "CARGOHOLD_STORAGE_AZURE_ACCOUNTKEY": self.params["accountkey"],
            "CARGOHOLD_STORAGE_AZURE_SERVICEURL": self.params["serviceurl"],
            "CARGOHOLD_STORAGE_AZURE_CONTAINER": container,
            "CARGOHOLD_STORAGE_AZURE_ROOTDIRECTORY": "registry",
        }

    def stop(self) -> None:
        self.azurite.stop()

    def start(self) -> None:
        self.azurite.start()

    def make_driver(self):
        return create_driver(dict(self.params, rootdirectory="registry"))


def new_container() -> str:
    return "t" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Azurite:
    binary = find_tool("azurite-blob", "CARGOHOLD_AZURITE", [str(REPO / ".tools/node_modules/.bin/azurite-blob")],
                       INSTALL_HINT)
    emulator = Azurite(binary, tmp_path_factory.mktemp("azurite"))
    emulator.start()
    yield emulator
    emulator.process.cleanup()


@pytest.fixture(scope="session")
def azurite_backend(azurite):
    """``azurite_backend(container=None)``: an :class:`AzuriteBackend` on that
    container (a new one by default) of the session's Azurite."""
    return lambda container=None: AzuriteBackend(azurite, container or new_container())
