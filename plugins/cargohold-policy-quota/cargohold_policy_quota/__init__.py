"""cargohold-policy-quota: byte and repository-count quotas per namespace.

Configuration::

    policy:
      quota:
        refresh: 60s                  # re-read usage from storage this often (default 60s)
        rules:
          - namespace: "team-a/*"     # glob on the repository name
            bytes: 10GiB              # optional
            repositories: 50          # optional

**What counts.** A rule's byte usage is the sum of the sizes of the
*distinct* blobs linked into the repositories its glob matches: a layer
shared by ten of the namespace's repositories counts once; a blob also used
by another namespace counts in both.  Blobs are what the blob upload API
stores (layers, configs, artifacts); manifests are not counted (each is at
most ``validation.manifests.maxsize``).  Upload sessions in progress do not
count.  A repository counts once it has a blob link or a manifest, as in the
catalog.  Usage is what is in the storage: it is read from there at start-up
and every ``refresh``, and kept up to date in between from this process's own
pushes, mounts and deletes (and the scheduled garbage collector's deletes).

**Refusals** are 403 ``DENIED`` naming the rule: for bytes, before the bytes
are stored when the upload's size is known (a monolithic upload, a chunk or
a final ``PUT`` with ``Content-Length``), else once the blob is complete,
before it is committed (chunked uploads, e.g. skopeo's); a blob already
counted in the namespace adds nothing and is never refused.  Mounting a blob
into the namespace counts as pushing it.  For repositories, any write
creating one more repository than the rule allows.  Deleting never is.

Each rule is served at ``/metrics`` as gauges ``cargohold_quota_bytes_used``,
``cargohold_quota_bytes_limit``, ``cargohold_quota_repositories_used`` and
``cargohold_quota_repositories_limit``, labelled ``namespace``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import time

from prometheus_client.core import GaugeMetricFamily

from cargohold import hookimpl
from cargohold.config import ConfigError, Duration, Size, check_section
from cargohold.errors import Denied
from cargohold.events import BLOB_MEDIA_TYPE, DELETE, MOUNT, PULL, PUSH
from cargohold.registry.catalog import repositories
from cargohold.storage.driver import StorageError

log = logging.getLogger("cargohold.policy.quota")

RULE_SCHEMA = {"namespace": str, "bytes": Size, "repositories": int}
DEFAULT_REFRESH = 60.0
PLUGIN_NAME = "policy-quota.rules"


@dataclasses.dataclass
class Rule:
    """One quota and its usage.  ``links`` maps each counted blob digest to
    the repositories of the namespace linking it; ``sizes`` its size."""

    namespace: str
    max_bytes: int | None
    max_repositories: int | None
    links: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    repositories: set[str] = dataclasses.field(default_factory=set)
    used_bytes: int = 0

    def covers(self, repository: str) -> bool:
        return fnmatch.fnmatchcase(repository, self.namespace)

    def add_link(self, repository: str, digest: str, size: int) -> None:
        self.repositories.add(repository)
        holders = self.links.get(digest)
        if holders is None:
            self.links[digest] = holders = set()
            self.sizes[digest] = size
            self.used_bytes += size
        holders.add(repository)

    def remove_link(self, repository: str, digest: str) -> None:
        holders = self.links.get(digest)
        if holders is None:
            return
        holders.discard(repository)
        if not holders:
            del self.links[digest]
            self.used_bytes -= self.sizes.pop(digest)

    def check_bytes(self, digest: str | None, size: int | None) -> None:
        if self.max_bytes is None or size is None or (digest is not None and digest in self.links):
            return
        if self.used_bytes + size > self.max_bytes:
            raise Denied(
                f"storage quota of {self.namespace!r} exceeded: {self.used_bytes} of {self.max_bytes} bytes used, "
                f"this blob needs {size} more",
                detail={"namespace": self.namespace, "quota": "bytes", "limit": self.max_bytes,
                        "used": self.used_bytes, "requested": size})

    def check_repository(self, repository: str) -> None:
        if self.max_repositories is None or repository in self.repositories:
            return
        if len(self.repositories) >= self.max_repositories:
            raise Denied(
                f"repository quota of {self.namespace!r} exceeded: it has {len(self.repositories)} of "
                f"{self.max_repositories} repositories",
                detail={"namespace": self.namespace, "quota": "repositories", "limit": self.max_repositories,
                        "used": len(self.repositories)})


def parse_rules(section: dict | None) -> list[Rule]:
    """The rules of ``policy.quota``; :class:`ConfigError` naming a bad key."""
    rules = []
    for i, entry in enumerate((section or {}).get("rules") or []):
        path = f"policy.quota.rules[{i}]"
        entry = check_section(entry, RULE_SCHEMA, path)
        if not entry.get("namespace"):
            raise ConfigError(f"{path}.namespace: required (a glob such as 'team-a/*')")
        if entry.get("bytes") is None and entry.get("repositories") is None:
            raise ConfigError(f"{path}: give bytes, repositories or both")
        if (entry.get("repositories") or 0) < 0:
            raise ConfigError(f"{path}.repositories: expected a number of repositories, 0 or more")
        rules.append(Rule(entry["namespace"], entry.get("bytes"), entry.get("repositories")))
    return rules


class Quotas:
    """The quota rules of one app, registered as a plugin of its manager
    when rules are configured: the policy hooks refuse, the event hook
    accounts, and :meth:`collect` serves the gauges."""

    def __init__(self, rules: list[Rule], registry, refresh: float):
        self.rules = rules
        self.registry = registry
        self.refresh = refresh
        self.scanned_at = 0.0
        self._journal: list | None = None  # events seen while a scan runs

    # -- usage ---------------------------------------------------------------

    def scan(self) -> None:
        """Read every rule's usage from the storage, replacing what was
        counted.  Events arriving meanwhile (other requests go on while the
        storage is read) are applied again to the result, as the listing
        may have missed their change."""
        if self._journal is not None:
            return  # a scan is under way
        self._journal = journal = []
        try:
            fresh = self._read_usage()
        finally:
            self._journal = None
        for old, new in zip(self.rules, fresh):
            old.links, old.sizes, old.repositories, old.used_bytes = (
                new.links, new.sizes, new.repositories, new.used_bytes)
        for event in journal:
            self.cargohold_registry_event(event)
        self.scanned_at = time.monotonic()

    def _read_usage(self) -> list[Rule]:
        fresh = [Rule(r.namespace, r.max_bytes, r.max_repositories) for r in self.rules]
        blobs = self.registry.blobs
        for repository in repositories(self.registry.driver):
            covering = [r for r in fresh if r.covers(repository)]
            if not covering:
                continue
            for rule in covering:
                rule.repositories.add(repository)
            for digest in blobs.links(repository):
                size = blobs.size(digest)
                if size is None:
                    continue  # a dangling link (its blob swept): serves nothing, counts nothing
                for rule in covering:
                    rule.add_link(repository, digest, size)
        return fresh

    def current(self, repository: str) -> list[Rule]:
        """The rules covering ``repository``, their usage re-read from the
        storage first when older than ``refresh``."""
        covering = [r for r in self.rules if r.covers(repository)]
        if covering and time.monotonic() - self.scanned_at > self.refresh:
            self.scan()
        return covering

    # -- policy hooks --------------------------------------------------------

    def check_blob(self, repository: str, digest: str | None, size: int | None) -> None:
        """Refuse a blob of ``size`` bytes (``None``: not known yet) coming
        into ``repository`` if it takes a rule over its quota."""
        for rule in self.current(repository):
            rule.check_repository(repository)
            rule.check_bytes(digest, size)

    @hookimpl
    def cargohold_before_blob_upload(self, repository, size, digest):
        self.check_blob(repository, digest, size)

    @hookimpl
    def cargohold_before_blob_commit(self, repository, digest, size):
        self.check_blob(repository, digest, size)

    @hookimpl
    def cargohold_before_blob_mount(self, repository, digest, size):
        self.check_blob(repository, digest, size)

    @hookimpl
    def cargohold_before_manifest_put(self, repository):
        for rule in self.current(repository):
            rule.check_repository(repository)

    # -- accounting ----------------------------------------------------------

    @hookimpl
    def cargohold_registry_event(self, event):
        action = event.action
        if action == PULL:
            return
        if self._journal is not None:
            self._journal.append(event)
        if action == PUSH or action == MOUNT:
            covering = [r for r in self.rules if r.covers(event.repository)]
            for rule in covering:
                if event.media_type == BLOB_MEDIA_TYPE:
                    rule.add_link(event.repository, event.digest, event.size)
                else:
                    rule.repositories.add(event.repository)
        elif action == DELETE and event.digest is not None:
            covering = [r for r in self.rules if r.covers(event.repository) and event.digest in r.links]
            # A manifest delete carries a digest too: only a link really gone is uncounted.
            if covering and not self.registry.blobs.is_linked(event.repository, event.digest):
                for rule in covering:
                    rule.remove_link(event.repository, event.digest)

    # -- metrics -------------------------------------------------------------

    def collect(self):
        if self.rules and time.monotonic() - self.scanned_at > self.refresh:
            self.scan()
        gauges = {
            "bytes_used": ("Bytes of distinct blobs in the namespace", lambda r: r.used_bytes),
            "bytes_limit": ("The namespace's byte quota", lambda r: r.max_bytes),
            "repositories_used": ("Repositories in the namespace", lambda r: len(r.repositories)),
            "repositories_limit": ("The namespace's repository quota", lambda r: r.max_repositories),
        }
        for name, (help_text, value) in gauges.items():
            family = GaugeMetricFamily(f"cargohold_quota_{name}", help_text, labels=["namespace"])
            for rule in self.rules:
                if value(rule) is not None:
                    family.add_metric([rule.namespace], value(rule))
            yield family


@hookimpl
def cargohold_config_schema():
    return {"policy.quota": {"rules": list, "refresh": Duration}}


@hookimpl
def cargohold_startup(app):
    """With rules configured: count the usage from the storage, then put
    the rules in force (a plugin of this app's manager) and in ``/metrics``."""
    section = app.config["CARGOHOLD"].get("policy", {}).get("quota") or {}
    rules = parse_rules(section)
    if not rules:
        return
    state = app.extensions["cargohold"]
    refresh = section.get("refresh")
    quotas = Quotas(rules, state.registry, DEFAULT_REFRESH if refresh is None else refresh)
    try:
        quotas.scan()
    except StorageError as e:
        # Not a reason to stay down: the first push reads it again (and is
        # refused with 503 while the storage fails).
        log.warning("quota usage could not be read from the storage yet: %s", e)
    state.pm.register(quotas, name=PLUGIN_NAME)
    state.metrics.add_collector(quotas)
