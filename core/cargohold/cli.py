"""The ``cargohold`` command.

``cargohold serve`` monkey-patches with gevent before importing anything
else (Flask, the app, plugins); the other subcommands never import gevent.
So this module imports only the standard library at the top, and each
subcommand imports what it needs.

Exit codes: 0 success, 2 bad configuration or usage (the message names the
key; no traceback), 3 the app failed to start for another reason.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any, Sequence

CONFIG_ENV = "CARGOHOLD_CONFIG"


#: The core's commands.  Any other command comes from a plugin
#: (``cargohold_cli_commands``): plugins are loaded to build the parser only
#: then.
CORE_COMMANDS = frozenset({"serve", "config", "plugins", "purge-uploads", "proxy", "gc",
                           "config-reference", "hook-reference", "index"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _parser(argv if _named_command(argv) not in CORE_COMMANDS else None)
    except Exception as e:  # a plugin failed to load or to add its command
        if not _is_user_error(e):
            raise
        print(f"cargohold: {e}", file=sys.stderr)
        return 3
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "serve":
        from gevent import monkey

        monkey.patch_all()  # before Flask, the app or any plugin is imported
    try:
        return args.run(args)
    except Exception as e:
        if not _is_user_error(e):
            raise
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"cargohold: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _is_user_error(error: BaseException) -> bool:
    from cargohold.config import ConfigError

    return isinstance(error, (ConfigError, *_startup_errors()))


def _startup_errors() -> tuple[type[BaseException], ...]:
    try:
        from cargohold.plugins import StartupError
    except ImportError:
        return ()
    return (StartupError,)


def _named_command(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (the
    top-level parser has no option taking a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _common_options() -> argparse.ArgumentParser:
    """The options every command takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", metavar="FILE", default=os.environ.get(CONFIG_ENV) or None,
        help=f"YAML configuration file (default: ${CONFIG_ENV}; without one, defaults "
             "and CARGOHOLD_* environment variables only)")
    return common


def _add_plugin_commands(subparsers: Any, argv: list[str]) -> None:
    """Let plugins add their commands (``cargohold_cli_commands``), with the
    plugin manager of the configuration ``argv`` names: plugins it disables
    add nothing.  A configuration that cannot be read disables nothing here;
    the command reports it when it loads the configuration."""
    from cargohold.config import ConfigError, disabled_plugins, read_config
    from cargohold.plugins import build_plugin_manager, call_startup

    known, _ = _common_options().parse_known_args(argv)
    try:
        disabled = disabled_plugins(read_config(known.config))
    except ConfigError:
        disabled = []
    pm = build_plugin_manager(disabled)
    call_startup(pm, "cargohold_cli_commands", subparsers=subparsers, parents=[_common_options()])


def _parser(plugin_argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``plugin_argv``, plugins' commands too
    (see :func:`_add_plugin_commands`)."""
    from cargohold import __version__

    parser = argparse.ArgumentParser(
        prog="cargohold", description="A container image registry (OCI Distribution, Docker Registry V2).")
    parser.add_argument("--version", action="version", version=f"cargohold {__version__}")
    common = _common_options()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the registry",
                       description="Run the registry until SIGTERM or SIGINT, then drain. "
                                   "SIGHUP reloads the configuration file (read-only mode, log "
                                   "settings and auth apply live; other keys need a restart).")
    p.set_defaults(run=_cmd_serve)

    p = sub.add_parser("config", parents=[common], help="print the effective configuration",
                       description="Print the validated configuration (file, then environment) "
                                   "as YAML, secrets masked.")
    p.set_defaults(run=_cmd_config)

    p = sub.add_parser("plugins", parents=[common], help="list the loaded plugins",
                       description="List loaded plugins with their distribution, version and hooks.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_cmd_plugins)

    p = sub.add_parser("purge-uploads", parents=[common], help="delete abandoned upload sessions",
                       description="Delete upload sessions older than "
                                   "storage.maintenance.uploadpurging.age, once.")
    p.add_argument("--age", metavar="DURATION", type=_duration, help="override the age, e.g. 24h")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    p.set_defaults(run=_cmd_purge_uploads)

    p = sub.add_parser("proxy", help="pull-through cache maintenance",
                       description="Maintenance of the pull-through cache (the proxy section).")
    proxy_sub = p.add_subparsers(dest="proxy_command", metavar="ACTION", required=True)
    p = proxy_sub.add_parser("purge", parents=[common], help="unlink cached content not pulled within its ttl",
                             description="Unlink the cached manifests, tags and blobs that were not pulled "
                                         "within their upstream's ttl; blobs a kept manifest uses stay. "
                                         "Garbage collection then removes the bytes nothing links.")
    p.add_argument("--dry-run", action="store_true", help="only list what would be unlinked")
    p.set_defaults(run=_cmd_proxy_purge)
    p = sub.add_parser("gc", parents=[common], help="collect garbage (online)",
                       description="Sweep blobs, manifests and links no tag reaches, and old upload sessions, "
                                   "while registries keep serving the same storage.  Only one collection runs "
                                   "at a time per store.")
    p.add_argument("--dry-run", action="store_true", help="only report what would be swept")
    p.add_argument("--delete-untagged", action="store_true",
                   help="also sweep manifests no tag reaches (and their referrers)")
    p.add_argument("--grace", metavar="DURATION", type=_duration,
                   help="keep anything written or used more recently (default and minimum: "
                        "storage.maintenance.gc.grace, 1h unless configured)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_cmd_gc)

    for name, what in (("config-reference", "every configuration key the installed plugins accept"),
                       ("hook-reference", "every hook a plugin can implement")):
        p = sub.add_parser(name, help=f"print {what}, as Markdown",
                           description=f"Print {what} as Markdown (a page of the documentation).")
        p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
        p.set_defaults(run=_cmd_reference, page=name)
    p = sub.add_parser("index", help="the listing index (catalog and tags on object stores)",
                       description="Maintenance of the listing index that serves _catalog and tags/list "
                                   "(storage.listing.mode).  Registries keep it up to date; rebuild it after "
                                   "another registry (the reference registry, an older cargohold) wrote to "
                                   "the store.")
    index_sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    p = index_sub.add_parser("rebuild", parents=[common], help="rebuild the index from the storage layout",
                             description="Rebuild the catalog and every repository's tags list from the "
                                         "layout, while registries keep serving.")
    p.set_defaults(run=_cmd_index_rebuild)
    p = index_sub.add_parser("verify", parents=[common], help="compare the index with the storage layout",
                             description="Print where the index and the layout disagree; exit status 1 "
                                         "if they do.")
    p.set_defaults(run=_cmd_index_verify)
    if plugin_argv is not None:
        _add_plugin_commands(sub, plugin_argv)
    return parser


def _duration(text: str) -> float:
    from cargohold.config import Duration

    try:
        return Duration.coerce(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e}, got {text!r}") from None


def load_config(path: str | None, environ: Any = None) -> tuple[dict, Any]:
    """The validated configuration and its plugin manager (see
    :func:`cargohold.app.load_config`)."""
    from cargohold.app import load_config as app_load_config

    return app_load_config(path, environ)


def _cmd_serve(args: argparse.Namespace) -> int:
    from cargohold.config import ConfigError
    from cargohold.server import configure_logging, serve

    config, _ = load_config(args.config)
    configure_logging(config["log"])
    from cargohold.app import create_app

    def app_factory():
        # Each worker builds its app from the parent's validated config, so
        # every worker (restarts included) runs the same configuration.
        return create_app(config=config, environ={})

    def reload_config():
        # SIGHUP: the file (and environment) read again, as at start.
        return load_config(args.config)[0]

    return serve(app_factory, config, expected_errors=(ConfigError, *_startup_errors()),
                 reload_config=reload_config)


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from cargohold.config import config_schemas, mask_secrets

    config, pm = load_config(args.config)
    schemas = config_schemas(pm.hook.cargohold_config_schema())
    sys.stdout.write(yaml.safe_dump(mask_secrets(config, schemas), sort_keys=False, default_flow_style=False))
    return 0


def _cmd_reference(args: argparse.Namespace) -> int:
    from cargohold import docgen
    from cargohold.plugins import build_plugin_manager

    if args.page == "config-reference":
        text = docgen.config_reference(build_plugin_manager())
    else:
        text = docgen.hook_reference()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from cargohold.config import disabled_plugins, read_config
    from cargohold.plugins import build_plugin_manager, describe_plugins

    # Only plugins.disabled matters here: a config that fails validation
    # should not stop anyone from seeing which plugins are installed.
    plugins = describe_plugins(build_plugin_manager(disabled_plugins(read_config(args.config))))
    if args.json:
        import json

        print(json.dumps(plugins, indent=2))
        return 0
    rows = [("NAME", "DISTRIBUTION", "VERSION", "HOOKS")]
    rows += [(p["name"], p["dist"] or "-", p["version"] or "-", ", ".join(p["hooks"]) or "-") for p in plugins]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    return 0


@contextlib.contextmanager
def maintenance_app(config: dict):
    """The app a maintenance command works through (the core's and plugins'
    commands alike), built from a configuration :func:`load_config` returned
    and shut down at the end (which also flushes the events it queued; the
    registries serving the same storage deliver them)."""
    from cargohold.app import create_app

    app = create_app(config=config, environ={})
    try:
        yield app
    finally:
        app.cargohold_shutdown()


def _cmd_purge_uploads(args: argparse.Namespace) -> int:
    config, _ = load_config(args.config)
    age = config["storage"]["maintenance"]["uploadpurging"]["age"] if args.age is None else args.age
    with maintenance_app(config) as app:
        purged = app.extensions["cargohold"].registry.uploads.purge(age, dry_run=args.dry_run)
    for path in purged:
        print(path)
    verb = "would purge" if args.dry_run else "purged"
    print(f"{verb} {len(purged)} upload session(s) older than {age:g}s", file=sys.stderr)
    return 0


def _cmd_proxy_purge(args: argparse.Namespace) -> int:
    from cargohold.proxy import EXTENSION

    config, _ = load_config(args.config)
    with maintenance_app(config) as app:
        proxy = app.extensions.get(EXTENSION)
        if proxy is None:
            print("cargohold proxy purge: no pull-through cache is configured (the proxy section)", file=sys.stderr)
            return 2
        removed = proxy.purge(dry_run=args.dry_run)
    for item in removed:
        print(item)
    verb = "would unlink" if args.dry_run else "unlinked"
    print(f"{verb} {len(removed)} expired manifest(s) and blob(s)", file=sys.stderr)
    return 0


def _index_listings(app):
    listings = app.extensions["cargohold"].registry.listings
    if not listings.indexed:
        print(f"cargohold index: storage.listing.mode is {listings.mode!r} and this store is listed by walking; "
              "nothing to do (set storage.listing.mode: index to use the index here)", file=sys.stderr)
        return None
    return listings


def _cmd_index_rebuild(args: argparse.Namespace) -> int:
    config, _ = load_config(args.config)
    with maintenance_app(config) as app:
        listings = _index_listings(app)
        if listings is None:
            return 0
        began = time.monotonic()
        counts = listings.rebuild()
    print(f"indexed {counts['repositories']} repositories and {counts['tags']} tags in "
          f"{time.monotonic() - began:.1f}s; dropped the lists of {counts['dropped']} repositories that are gone")
    return 0


def _cmd_index_verify(args: argparse.Namespace) -> int:
    config, _ = load_config(args.config)
    with maintenance_app(config) as app:
        listings = _index_listings(app)
        problems = [] if listings is None else listings.verify()
    for line in problems:
        print(line)
    return 1 if problems else 0


def _cmd_gc(args: argparse.Namespace) -> int:
    import json

    from cargohold.gc import collect
    from cargohold.gc.lease import LeaseError
    from cargohold.storage.driver import StorageError

    config, _ = load_config(args.config)
    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    with maintenance_app(config) as app:  # shutdown flushes the queued delete events
        try:
            report = collect(app, grace=args.grace, delete_untagged=args.delete_untagged or None,
                             dry_run=args.dry_run or None, progress=progress)
        except ValueError as e:
            print(f"cargohold: {e}", file=sys.stderr)
            return 2
        except LeaseError as e:
            print(f"cargohold: {e}", file=sys.stderr)
            return 1
        except StorageError as e:
            # Condemned markers left behind are resolved by the next run.
            print(f"cargohold: garbage collection failed: {e}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    verb = "would sweep" if report.dry_run else "swept"
    print(f"{verb} {report.blobs_swept} blobs ({_bytes(report.bytes_reclaimed)}), {report.manifests_swept} "
          f"manifests, {report.links_swept} links, {report.repositories_removed} empty repositories, "
          f"{report.uploads_purged} upload sessions in {report.duration:.1f}s")
    print(f"kept {report.blobs_marked} digests reachable from {report.manifests_marked} manifests in "
          f"{report.repositories} repositories ({report.kept_in_use} more because in use); "
          f"{report.blobs_scanned} blobs scanned")
    return 0


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


class _TerminalProgress:
    """A progress bar per garbage collection phase, redrawn in place."""

    WIDTH = 30

    def __init__(self, stream):
        self.stream = stream
        self.name, self.total, self.done, self._drawn = "", None, 0, 0.0

    def phase(self, name: str, total: int | None) -> None:
        self._end_line()
        self.name, self.total, self.done = name, total, 0
        self._draw(force=True)

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        self._draw()

    def finish(self) -> None:
        self._end_line()

    def _draw(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not force and now - self._drawn < 0.1 and self.done != self.total:
            return
        self._drawn = now
        if self.total:
            filled = int(self.WIDTH * min(self.done, self.total) / self.total)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total}"
        else:
            bar = f"{self.done}"
        self.stream.write(f"\r{self.name:<9} {bar}")
        self.stream.flush()

    def _end_line(self) -> None:
        if self.name:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.name = ""


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
