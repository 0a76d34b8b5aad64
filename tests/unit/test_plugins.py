"""Building the plugin manager and calling hooks safely."""

import subprocess
import sys
import types

import pluggy
import pytest

from cargohold import __version__, hookimpl, hookspecs
from cargohold import plugins as plugins_mod
from cargohold.plugins import (
    DEFAULT_PLUGINS,
    StartupError,
    build_plugin_manager,
    call_each,
    call_startup,
    chain_each,
    collect_named,
    describe_plugins,
)


@pytest.fixture
def pm():
    return build_plugin_manager()


@pytest.fixture
def bare_pm():
    """The hookspecs and no plugin: hook calls see only what a test registers."""
    manager = pluggy.PluginManager("cargohold")
    manager.add_hookspecs(hookspecs)
    return manager


def offers(*driver_names):
    class Offers:
        @hookimpl
        def cargohold_storage_drivers(self):
            return {n: (lambda params, n=n: n) for n in driver_names}

    return Offers()


# Driver names no installed plugin offers (the real s3 and azure plugins may
# be installed next to the core).
def test_collect_named_merges_distinct_names(pm):
    pm.register(offers("swift", "gcs"), name="cloud")
    factories = collect_named(pm, "cargohold_storage_drivers")
    assert {"inmemory", "swift", "gcs"} <= set(factories)
    assert factories["swift"]({}) == "swift"


def test_collect_named_duplicate_names_both_plugins(pm):
    pm.register(offers("swift"), name="first-swift")
    pm.register(offers("gcs", "swift"), name="second-swift")
    with pytest.raises(StartupError) as info:
        collect_named(pm, "cargohold_storage_drivers")
    message = str(info.value)
    assert "cargohold_storage_drivers" in message and "'swift'" in message
    assert "first-swift" in message and "second-swift" in message


def test_collect_named_tolerates_none(pm):
    class Nothing:
        @hookimpl
        def cargohold_auth_providers(self):
            return None

    before = set(collect_named(pm, "cargohold_auth_providers"))  # built-ins and installed plugins
    pm.register(Nothing(), name="nothing")
    assert set(collect_named(pm, "cargohold_auth_providers")) == before
    assert "none" in before


def test_call_each_isolates_failures(bare_pm, caplog):
    calls = []

    def plugin(label, fail=False):
        class P:
            @hookimpl
            def cargohold_registry_event(self, event):
                calls.append(label)
                if fail:
                    raise RuntimeError(f"{label} failed")

        return P()

    bare_pm.register(plugin("a"), name="a")
    bare_pm.register(plugin("b", fail=True), name="b")
    bare_pm.register(plugin("c", fail=True), name="c")
    bare_pm.register(plugin("d"), name="d")

    call_each(bare_pm, "cargohold_registry_event", event=object())

    assert calls == ["d", "c", "b", "a"]  # last registered first, as pluggy calls; each once
    assert "'b' failed in cargohold_registry_event" in caplog.text
    assert "'c' failed in cargohold_registry_event" in caplog.text


def test_call_each_passes_only_the_arguments_an_impl_takes(bare_pm):
    seen = []

    class Fewer:
        @hookimpl
        def cargohold_request_finished(self, status):
            seen.append(status)

    class Nothing:
        @hookimpl
        def cargohold_registry_event(self):
            seen.append("nothing")

    bare_pm.register(Fewer(), name="fewer")
    bare_pm.register(Nothing(), name="nothing")
    call_each(bare_pm, "cargohold_request_finished", request_info={}, status=204, duration=0.1)
    call_each(bare_pm, "cargohold_registry_event", event=object())
    assert seen == [204, "nothing"]


def test_call_each_runs_wrappers_and_honours_tryfirst(bare_pm, caplog):
    calls = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def cargohold_registry_event(self, event):
            calls.append("before")
            try:
                return (yield)
            finally:
                calls.append("after")

    class Late:
        @hookimpl(tryfirst=True)
        def cargohold_registry_event(self, event):
            calls.append("first")

    class Fails:
        @hookimpl
        def cargohold_registry_event(self, event):
            calls.append("fails")
            raise RuntimeError("boom")

    class Plain:
        @hookimpl
        def cargohold_registry_event(self, event):
            calls.append("plain")

    bare_pm.register(Plain(), name="plain")
    bare_pm.register(Fails(), name="fails")
    bare_pm.register(Late(), name="late")
    bare_pm.register(Wrapper(), name="wrapper")
    call_each(bare_pm, "cargohold_registry_event", event=object())
    # The wrapper sees the failed call, then the rest as a call of its own.
    assert calls == ["before", "first", "fails", "after", "before", "plain", "after"]
    assert "'fails' failed in cargohold_registry_event" in caplog.text


def test_a_wrapper_on_startup_runs(bare_pm):
    seen = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def cargohold_startup(self, app):
            seen.append(("wrapper", app))
            return (yield)

    bare_pm.register(Wrapper(), name="wrapper")
    call_startup(bare_pm, "cargohold_startup", app="the-app")
    assert seen == [("wrapper", "the-app")]


def test_call_startup_names_the_failing_plugin(bare_pm):
    class Broken:
        @hookimpl
        def cargohold_startup(self, app):
            raise RuntimeError("no licence")

    bare_pm.register(Broken(), name="broken-reporter")
    with pytest.raises(StartupError, match="'broken-reporter' failed in cargohold_startup: no licence"):
        call_startup(bare_pm, "cargohold_startup", app=None)


def test_chain_each_wraps_in_call_order_through_wrappers(bare_pm):
    seen = []

    def wrapping(label):
        class W:
            @hookimpl
            def cargohold_wrap_wsgi(self, wsgi_app, app):
                return f"{label}({wsgi_app})"

        return W()

    class Observer:
        @hookimpl(wrapper=True)
        def cargohold_wrap_wsgi(self, wsgi_app):
            seen.append(wsgi_app)
            return (yield)

    class Declines:
        @hookimpl
        def cargohold_wrap_wsgi(self):
            return None

    bare_pm.register(wrapping("inner"), name="inner")
    bare_pm.register(Declines(), name="declines")
    bare_pm.register(wrapping("outer"), name="outer")
    bare_pm.register(Observer(), name="observer")
    assert chain_each(bare_pm, "cargohold_wrap_wsgi", "wsgi_app", "app", app=None) == "inner(outer(app))"
    assert seen == ["app", "outer(app)", "outer(app)"]


def test_describe_plugins_lists_builtins(pm):
    described = {p["name"]: p for p in describe_plugins(pm)}
    for name in DEFAULT_PLUGINS:
        assert described[name]["dist"] == "cargohold"
        assert described[name]["version"] == __version__
    assert described["cargohold.builtin.errors"]["hooks"] == ["cargohold_error_response"]
    assert "cargohold_storage_drivers" in described["cargohold.builtin.storage"]["hooks"]


def test_describe_plugins_names_installed_distributions(pm):
    described = {p["name"]: p for p in describe_plugins(pm)}
    assert described["storage-filesystem"]["dist"] == "cargohold-storage-filesystem"
    assert "cargohold_storage_drivers" in described["storage-filesystem"]["hooks"]


def test_describe_plugins_lists_unpackaged_plugins_without_dist(pm):
    class Local:
        @hookimpl
        def cargohold_startup(self, app):
            pass

    pm.register(Local(), name="local")
    [local] = [p for p in describe_plugins(pm) if p["name"] == "local"]
    assert local == {"name": "local", "dist": None, "version": None, "hooks": ["cargohold_startup"]}


def test_blocked_builtin_is_not_registered():
    pm = build_plugin_manager(["cargohold.builtin.auth", "storage-filesystem"])
    names = [p["name"] for p in describe_plugins(pm)]
    assert "cargohold.builtin.auth" not in names and "storage-filesystem" not in names
    assert "none" not in collect_named(pm, "cargohold_auth_providers")
    assert "filesystem" not in collect_named(pm, "cargohold_storage_drivers")


def test_unknown_hook_fails_startup_naming_the_plugin(monkeypatch):
    module = types.ModuleType("cargohold_test_typo_plugin")

    @hookimpl
    def cargohold_storage_driver():  # typo: the hook is cargohold_storage_drivers
        return {}

    module.cargohold_storage_driver = cargohold_storage_driver
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(plugins_mod, "DEFAULT_PLUGINS", DEFAULT_PLUGINS + (module.__name__,))
    with pytest.raises(StartupError) as info:
        build_plugin_manager()
    assert "cargohold_test_typo_plugin" in str(info.value)
    assert "cargohold_storage_driver" in str(info.value)


def test_each_manager_is_independent():
    first, second = build_plugin_manager(), build_plugin_manager()

    class Extra:
        @hookimpl
        def cargohold_auth_providers(self):
            return {"extra": lambda params: None}

    first.register(Extra(), name="extra")
    assert "extra" in collect_named(first, "cargohold_auth_providers")
    assert "extra" not in collect_named(second, "cargohold_auth_providers")


def test_the_registry_never_imports_its_test_kit():
    """cargohold.testing and pytest are test dependencies (the ``testing``
    extra): building and serving the app must not import them."""
    code = (
        "import sys\n"
        "from cargohold import cli\n"
        "from cargohold.app import create_app\n"
        "from cargohold.server import wsgi\n"
        "app = create_app(config={'storage': {'inmemory': {}}}, environ={})\n"
        "app.test_client().get('/v2/')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')"
        " or m.startswith('cargohold.testing')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
