"""offload(): blocking calls leave the gevent loop free when serving."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from cargohold.blocking import offload


def test_without_gevent_it_is_a_plain_call():
    assert offload(divmod, 7, 2) == (3, 1)


def test_under_gevent_other_greenlets_keep_running_and_errors_propagate():
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import gevent
        from cargohold.blocking import offload

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
