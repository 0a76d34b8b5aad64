"""``cargohold retention [--config FILE] [--dry-run] [--json]``.

Exit codes: 0 done, 1 another run holds the lease or storage failed, 2 a
configuration problem (bad rules, no rules, deletes disabled, read-only).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_command(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "retention", parents=parents, help="delete tags and untagged manifests by retention.rules",
        description="Apply retention.rules once: delete the tags and untagged manifests they select, "
                    "as DELETE requests would (delete events included); blobs stay for `cargohold gc`. "
                    "Deleting needs storage.delete.enabled.")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    from cargohold.cli import load_config, maintenance_app
    from cargohold.gc.lease import LeaseError
    from cargohold.storage.driver import StorageError

    from cargohold_policy_retention import runner

    config, _ = load_config(args.config)
    chosen = runner.settings(config)
    if not chosen.rules:
        print("cargohold retention: no rules configured (retention.rules)", file=sys.stderr)
        return 2
    dry_run = args.dry_run or chosen.dryrun
    if not dry_run:
        runner.check_deletes_allowed(config, "cargohold retention")
    with maintenance_app(config) as app:  # shutdown flushes the queued delete events
        try:
            report = runner.run(app, dry_run=dry_run)
        except (LeaseError, StorageError) as e:  # another run holds the lease; the store failed
            print(f"cargohold retention: {e}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    rows = [("REPOSITORY", "TAG OR DIGEST", "RULE")]
    rows += [(d.repository, d.tag or d.digest, d.rule.describe()) for d in report.deletions]
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        for row in rows:
            print(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
    verb = "would delete" if report.dry_run else "deleted"
    print(f"{verb} {report.tags_deleted} tag(s) and {report.manifests_deleted} untagged manifest(s) in "
          f"{report.repositories} repositor(ies); {report.tags_kept} tag(s) kept", file=sys.stderr)
    for deletion in report.skipped:
        print(f"left {deletion.repository} {deletion.tag or deletion.digest}: changed since it was selected",
              file=sys.stderr)
    for deletion, message in report.refused:
        print(f"left {deletion.repository} {deletion.tag or deletion.digest}: refused by a policy: {message}",
              file=sys.stderr)
    return 0
