"""One retention run over an app's registry: the rules' selection, then the
deletions, through the same registry calls and events as ``DELETE``
requests.

* A tag goes as ``DELETE /v2/<name>/manifests/<tag>`` does
  (``Manifests.delete_tag``), and a ``delete`` event carrying the tag is
  emitted; the manifest stays (it becomes untagged).
* An untagged manifest goes as ``DELETE /v2/<name>/manifests/<digest>``
  does (``Manifests.delete``: its revision and referrer entry), and a
  ``delete`` event carrying the digest is emitted.

Events have the user agent ``cargohold-retention`` and no request fields.
Blobs stay: ``cargohold gc`` reclaims what nothing reaches any more.

Just before deleting, each choice is checked again: a tag pushed again
since the selection (naming another manifest) stays, and so does a manifest
a tag has come to reach.  One run at a time per store: a run that deletes
takes the ``retention`` lease (:class:`cargohold.gc.lease.Lease`); dry runs
take none.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from cargohold import events, policy
from cargohold.config import ConfigError
from cargohold.errors import ManifestUnknown, NameUnknown, RegistryError
from cargohold.gc.lease import Lease, store_now
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound

from cargohold_policy_retention.rules import Age, Deletion, Rule, applies_to, parse_rules, select_tags, select_untagged

log = logging.getLogger("cargohold.retention")

#: The user agent of retention's delete events.
AGENT = "cargohold-retention"
#: The lease's task name (``/cargohold/retention/lease/<epoch>``).
LEASE_TASK = "retention"

#: The ``retention`` section (``cargohold_config_schema``).
SCHEMA = {"rules": list, "schedule": Age, "dryrun": bool}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The checked ``retention`` section."""

    rules: list[Rule]
    #: Seconds between scheduled runs in the server; ``None``: no schedule.
    schedule: float | None
    dryrun: bool


def settings(config: dict) -> Settings:
    """``retention`` of a validated configuration, its rules checked;
    :class:`ConfigError` names a bad rule."""
    section = config.get("retention") or {}
    schedule = section.get("schedule") or None
    return Settings(parse_rules(section.get("rules")), schedule, bool(section.get("dryrun")))


def check_deletes_allowed(config: dict, what: str) -> None:
    """Deletions follow the registry's switches: ``storage.delete.enabled``
    (retention deletes what a ``DELETE`` request would) and read-only mode.
    Raises :class:`ConfigError` saying which is in the way."""
    storage = config["storage"]
    if not storage["delete"]["enabled"]:
        raise ConfigError(f"{what}: deletes are disabled on this registry (storage.delete.enabled); retention "
                          "deletes tags and manifests as DELETE requests do (a dry run only lists them)")
    if storage["maintenance"]["readonly"]["enabled"]:
        raise ConfigError(f"{what}: the registry is in read-only mode (storage.maintenance.readonly.enabled)")


@dataclasses.dataclass
class Report:
    """What a run deleted (or, with ``dry_run``, would delete)."""

    dry_run: bool
    started: float = 0.0
    duration: float = 0.0
    repositories: int = 0
    tags_kept: int = 0
    deletions: list[Deletion] = dataclasses.field(default_factory=list)
    #: Selected but left: pushed again or newly tagged since the selection.
    skipped: list[Deletion] = dataclasses.field(default_factory=list)
    #: Selected but refused by a policy plugin (``cargohold_before_delete``,
    #: e.g. an immutable tag), with the policy's message.
    refused: list[tuple[Deletion, str]] = dataclasses.field(default_factory=list)

    @property
    def tags_deleted(self) -> int:
        return sum(1 for d in self.deletions if d.tag is not None)

    @property
    def manifests_deleted(self) -> int:
        return sum(1 for d in self.deletions if d.tag is None)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "started": self.started, "duration": round(self.duration, 3),
                "repositories": self.repositories, "tags_kept": self.tags_kept,
                "tags_deleted": self.tags_deleted, "manifests_deleted": self.manifests_deleted,
                "deletions": [d.as_dict() for d in self.deletions],
                "skipped": [d.as_dict() for d in self.skipped],
                "refused": [{**d.as_dict(), "message": message} for d, message in self.refused]}


def run(app, dry_run: bool | None = None, unless_within: float | None = None) -> Report | None:
    """Apply ``retention.rules`` to every repository of ``app``'s registry
    once (``dry_run`` default: ``retention.dryrun``).  With
    ``unless_within`` (seconds), a run that would delete returns ``None``
    instead when another one completed that recently (by the store's clock):
    scheduled runs in several workers make one run per interval.  Raises
    :class:`cargohold.gc.lease.LeaseError` when another run holds the lease,
    :class:`ConfigError` for bad rules or, when deleting, deletes that are
    disabled; storage errors propagate."""
    state = app.extensions["cargohold"]
    chosen = settings(state.config)
    dry_run = chosen.dryrun if dry_run is None else dry_run
    if not dry_run:
        check_deletes_allowed(state.config, "retention")
    report = Report(dry_run=dry_run)
    began = time.monotonic()
    lease = None
    if not dry_run:
        lease = Lease(state.driver, task=LEASE_TASK, activity="retention run")
        lease.acquire()
    try:
        report.started = lease.started if lease is not None else _store_clock(state.driver)
        if lease is not None and unless_within and report.started - _last_run(state.driver) < unless_within:
            return None
        for repository in state.registry.repositories():
            if applies_to(chosen.rules, repository):
                _repository(state, repository, chosen.rules, report, lease)
        if lease is not None:
            lease.check()
            state.driver.put_content(paths.last_run(LEASE_TASK), b"")
    finally:
        if lease is not None:
            lease.release()
        report.duration = time.monotonic() - began
    return report


def _last_run(driver) -> float:
    """When the last run that deleted completed (the store's clock), or 0."""
    try:
        return driver.stat(paths.last_run(LEASE_TASK)).modtime
    except PathNotFound:
        return 0.0


def _store_clock(driver) -> float:
    """The store's clock (modtimes are the store's): a probe file's modtime,
    or this host's clock where the probe cannot be written."""
    try:
        return store_now(driver)
    except Exception:
        return time.time()


def _repository(state, repository: str, rules: list[Rule], report: Report, lease: Lease | None) -> None:
    manifests = state.registry.manifests
    try:
        tags = manifests.tag_records(repository)
    except NameUnknown:
        return  # deleted meanwhile
    report.repositories += 1
    now = report.started
    # A tag a policy keeps keeps its manifest: ask before choosing manifests.
    doomed_tags = _allowed(state.pm, select_tags(repository, tags, rules, now), report)
    gone = {d.tag for d in doomed_tags}
    kept = [t for t in tags if t.tag not in gone]
    report.tags_kept += len(kept)
    doomed_manifests = select_untagged(repository, kept, manifests.revisions(repository), rules, now,
                                       lambda roots: manifests.reachable(repository, roots))
    doomed_manifests = _allowed(state.pm, doomed_manifests, report)
    if report.dry_run:
        report.deletions += doomed_tags + doomed_manifests
        return
    for deletion in doomed_tags:
        lease.check()
        try:
            if manifests.resolve_tag(repository, deletion.tag) != deletion.digest:
                report.skipped.append(deletion)  # pushed again meanwhile
                continue
            manifests.delete_tag(repository, deletion.tag)
        except ManifestUnknown:
            continue  # deleted meanwhile
        _deleted(state, deletion, report)
    if not doomed_manifests:
        return
    # Tags pushed since the selection protect what they reach.
    reached = manifests.reachable(repository, [t.digest for t in manifests.tag_records(repository)])
    for deletion in doomed_manifests:
        lease.check()
        if deletion.digest in reached:
            report.skipped.append(deletion)
            continue
        try:
            manifests.delete(repository, deletion.digest)
        except ManifestUnknown:
            continue
        _deleted(state, deletion, report)


def _allowed(pm, selected: list[Deletion], report: Report) -> list[Deletion]:
    """The deletions the policy plugins allow, asked as for an API
    ``DELETE`` (a tag, or an untagged manifest); refusals go to
    ``report.refused``.  Dry runs ask too: a check changes nothing."""
    if not selected or not policy.active(pm, "cargohold_before_delete"):
        return selected
    allowed = []
    for deletion in selected:
        if deletion.tag is not None:
            target = {"kind": "tag", "reference": deletion.tag, "tags": [deletion.tag]}
        else:
            target = {"kind": "manifest", "reference": deletion.digest, "tags": []}
        try:
            policy.check(pm, "cargohold_before_delete", repository=deletion.repository, digest=deletion.digest,
                         **target)
        except RegistryError as refusal:
            report.refused.append((deletion, refusal.message))
            log.info("retention left %s %s: refused by a policy: %s", deletion.repository,
                     deletion.tag or deletion.digest, refusal.message)
            continue
        allowed.append(deletion)
    return allowed


def _deleted(state, deletion: Deletion, report: Report) -> None:
    report.deletions.append(deletion)
    if deletion.tag is not None:
        events.emit_from(state.pm, events.DELETE, deletion.repository, tag=deletion.tag, agent=AGENT)
        log.info("retention deleted tag %s:%s (%s)", deletion.repository, deletion.tag, deletion.rule.describe())
    else:
        events.emit_from(state.pm, events.DELETE, deletion.repository, digest=deletion.digest, agent=AGENT)
        log.info("retention deleted manifest %s@%s (%s)", deletion.repository, deletion.digest,
                 deletion.rule.describe())
