"""offload(): blocking calls leave the gevent loop free when serving."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from cargohold.blocking import concurrently, offload, start


def test_without_gevent_it_is_a_plain_call():
    assert offload(divmod, 7, 2) == (3, 1)


def test_under_gevent_other_greenlets_keep_running_and_errors_propagate():
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import gevent
        from cargohold.blocking import concurrently, offload, start

        blocking_sleep = monkey.get_original("time", "sleep")
        ticks = []

        def ticker():
            while True:
                ticks.append(1)
                gevent.sleep(0.01)

        t = gevent.spawn(ticker)
        offload(blocking_sleep, 0.3)
        t.kill()
        try:
            offload(int, "x")
        except ValueError:
            raised = True
        print(len(ticks), raised)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    ticks, raised = out.stdout.split()
    assert int(ticks) >= 15, "the loop stalled during the blocking call"
    assert raised == "True"
    # An error the caller handles is not also printed as an unhandled one.
    assert "Traceback" not in out.stderr and "ValueError" not in out.stderr, out.stderr


def test_start_and_concurrently_without_gevent_run_in_order():
    order = []
    assert start(order.append, 1).wait() is None
    concurrently(lambda: order.append(2), lambda: order.append(3))
    assert order == [1, 2, 3]
    failed = start(int, "x")
    try:
        failed.wait()
    except ValueError:
        pass
    else:
        raise AssertionError("the error was not raised")
    failed.wait_quietly()


def test_under_gevent_concurrent_calls_overlap_and_all_end_before_an_error():
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import time
        from cargohold.blocking import concurrently, offload

        blocking_sleep = monkey.get_original("time", "sleep")
        ended = []

        def wait(name, seconds, fail=False):
            offload(blocking_sleep, seconds)
            ended.append(name)
            if fail:
                raise KeyError(name)

        began = time.monotonic()
        concurrently(lambda: wait("a", 0.3), lambda: wait("b", 0.3), lambda: wait("c", 0.3))
        took = time.monotonic() - began
        try:
            concurrently(lambda: wait("d", 0.05, fail=True), lambda: wait("e", 0.2))
        except KeyError as e:
            error = e.args[0]
        print(round(took, 2), error, ",".join(ended))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    took, error, ended = out.stdout.split()
    assert float(took) < 0.6, "the calls ran one after the other"
    assert error == "d"
    assert ended.split(",")[-2:] == ["d", "e"]  # e finished before d's error was raised
    assert "Traceback" not in out.stderr, out.stderr
