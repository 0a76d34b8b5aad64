"""Retention rules for cargohold: keep the newest N tags matching a pattern,
delete untagged manifests older than an age; ``cargohold retention`` on
demand, ``retention.schedule`` in the server.

Hooks: ``cargohold_config_schema`` (the ``retention`` section),
``cargohold_cli_commands`` (``cargohold retention``) and
``cargohold_startup`` (checks the rules; schedules runs).  See
:mod:`cargohold_policy_retention.rules` for what rules select and
:mod:`cargohold_policy_retention.runner` for how deletions are made.
"""

from __future__ import annotations

import logging

from cargohold import hookimpl, schedule

from cargohold_policy_retention import runner
from cargohold_policy_retention.command import add_command

log = logging.getLogger("cargohold.retention")

__all__ = ["run_scheduled"]


@hookimpl
def cargohold_config_schema():
    return {"retention": runner.SCHEMA}


@hookimpl
def cargohold_cli_commands(subparsers, parents):
    add_command(subparsers, parents)


@hookimpl
def cargohold_startup(app):
    config = app.config["CARGOHOLD"]
    chosen = runner.settings(config)  # bad rules fail start-up, naming the rule
    if not chosen.schedule or not chosen.rules:
        return
    if not chosen.dryrun:
        runner.check_deletes_allowed(config, "retention.schedule")
    spawn_later = schedule.server_spawn_later()
    if spawn_later is not None:
        schedule.every(chosen.schedule, lambda: run_scheduled(app, chosen.schedule), spawn_later)


#: A scheduled run is skipped when another completed within this part of
#: the interval (every worker schedules runs; one of them does the work).
SKIP_WITHIN = 0.9


def run_scheduled(app, interval: float | None = None) -> runner.Report | None:
    """One scheduled run (in a native thread, so the worker keeps serving):
    its report, or ``None`` when skipped (read-only mode switched on by a
    reload, another run holds the lease or completed within the last 0.9
    ``interval``) or failed (logged)."""
    from cargohold.blocking import offload
    from cargohold.gc.lease import LeaseError

    if app.extensions["cargohold"].config["storage"]["maintenance"]["readonly"]["enabled"]:
        log.info("scheduled retention skipped: the registry is in read-only mode")
        return None
    try:
        report = offload(runner.run, app, None, interval * SKIP_WITHIN if interval else None)
    except LeaseError as e:
        log.info("scheduled retention skipped: %s", e)
        return None
    except Exception:
        log.exception("scheduled retention failed")
        return None
    if report is None:
        log.debug("scheduled retention skipped: another worker ran it within the interval")
        return None
    log.info("retention %s %d tag(s) and %d untagged manifest(s) in %d repositor(ies) in %.1fs",
             "would delete" if report.dry_run else "deleted", report.tags_deleted, report.manifests_deleted,
             report.repositories, report.duration)
    if report.dry_run:
        for deletion in report.deletions:
            log.info("retention would delete %s%s (%s)", deletion.repository,
                     f":{deletion.tag}" if deletion.tag else f"@{deletion.digest}", deletion.rule.describe())
    return report
