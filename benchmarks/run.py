"""Reproduce the README's performance figures in one go.

Starts cargohold (``http.workers: auto``, access log off) and the reference
registry (Debian ``docker-registry``, ``contrib/bench/reference-registry.yml``)
on fresh data directories under one temporary directory on the same disk,
then runs, in this order:

1. ``regbench.py --limits`` on that disk: the host's ceilings (disk
   sequential write + fsync, small-file fsync rate, loopback TCP, sha256);
2. ``regbench.py --compare``: every scenario, cargohold (A) and the
   reference (B) interleaved round by round, both servers' process trees
   sampled for RSS/PSS/CPU;
3. :mod:`benchmarks.wrk_pull`: ``wrk -t2 -c4 -d10s`` on one 64 MiB blob,
   A and B interleaved;

and prints the table of the README's performance section with the targets
of issue 17 checked.  Everything is also written to ``--out`` (JSON).

    .venv/bin/python benchmarks/run.py --regbench ../shared/bench/regbench.py
    .venv/bin/python benchmarks/run.py --quick            # a shorter run to try it out

Needs ``docker-registry``, ``wrk`` and ``aiohttp`` (for regbench).  The
servers are stopped and the data directories removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REFERENCE_CONFIG = os.path.join(REPO, "contrib", "bench", "reference-registry.yml")

# Issue 17's targets: scenario -> (metric, minimum ratio A/B).
RATIO_TARGETS = {
    "push-image": ("ips", 2.0), "small-ops": ("rps", 4.0), "catalog": ("lps", 2.0),
    "tags-list": ("lps", 3.0), "tags-page": ("pps", 3.0),
}
FLOOR = 1.5  # no scenario below this ratio
PUSH_LARGE_OF_DISK = 0.85
WRK_RATIO, WRK_OF_LOOPBACK = 1.5, 0.60
PSS_RATIO = 1.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited at start ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/1."):
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{name} did not answer on 127.0.0.1:{port}")


def start_cargohold(root: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, CARGOHOLD_HTTP_ADDR=f"127.0.0.1:{port}", CARGOHOLD_HTTP_WORKERS="auto",
               CARGOHOLD_LOG_ACCESSLOG_DISABLED="true", CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY=root)
    exe = os.path.join(os.path.dirname(sys.executable), "cargohold")
    proc = subprocess.Popen([exe, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_ready(port, proc, "cargohold")
    return proc


def start_reference(root: str, port: int, workdir: str) -> subprocess.Popen:
    exe = shutil.which("docker-registry")
    if not exe:
        raise SystemExit("the reference registry is missing: apt-get install docker-registry")
    with open(REFERENCE_CONFIG) as f:
        text = f.read()
    text = text.replace("/tmp/reference-bench", root).replace("127.0.0.1:5001", f"127.0.0.1:{port}")
    config = os.path.join(workdir, "reference.yml")
    with open(config, "w") as f:
        f.write(text)
    proc = subprocess.Popen([exe, "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_ready(port, proc, "docker-registry")
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ratio(doc: dict, name: str, key: str) -> float | None:
    return ((doc.get("scenarios", {}).get(name) or {}).get("ratio") or {}).get(key)


def summary(reg: dict, wrk: dict) -> list[str]:
    """The figures against issue 17's targets, one line each."""
    lines = []

    def check(label: str, value: float | None, target: float, fmt: str) -> None:
        if value is None:
            lines.append(f"  {label:<46} n/a")
            return
        ok = "met" if value >= target else "NOT met"
        lines.append(f"  {label:<46} {fmt.format(value):>10}   target {fmt.format(target):>8}   {ok}")

    lim = reg.get("limits", {})
    push_large = ((reg.get("scenarios", {}).get("push-large") or {}).get("A") or {}).get("mbps") or {}
    disk = lim.get("seq_write_fsync_mbps")
    if push_large and disk:
        check("push-large / disk+fsync ceiling", push_large["median"] / disk, PUSH_LARGE_OF_DISK, "{:.0%}")
    for name, (key, target) in RATIO_TARGETS.items():
        check(f"{name} A/B", _ratio(reg, name, key), target, "{:.2f}x")
    for name in reg.get("scenarios", {}):
        if name not in RATIO_TARGETS:  # push-large, push-chunked, pull-large: MB/s
            check(f"{name} A/B", _ratio(reg, name, "mbps"), FLOOR, "{:.2f}x")
    lowest = min(((r, n) for n in reg.get("scenarios", {})
                  if (r := _ratio(reg, n, RATIO_TARGETS.get(n, ("mbps",))[0])) is not None), default=None)
    if lowest:
        check(f"lowest scenario A/B ({lowest[1]})", lowest[0], FLOOR, "{:.2f}x")
    if wrk:
        check("wrk pull A/B", wrk.get("ratio"), WRK_RATIO, "{:.2f}x")
        loop = lim.get("loopback_iperf3_mbps") or lim.get("loopback_python_mbps")
        if loop:
            check("wrk pull / loopback ceiling", wrk["median"]["A"] / loop, WRK_OF_LOOPBACK, "{:.0%}")
    targets = reg.get("targets", {})
    a, b = (targets.get("A") or {}).get("peak_pss_mib"), (targets.get("B") or {}).get("peak_pss_mib")
    if a and b:
        lines.append(f"  peak PSS: cargohold {a:.0f} MiB, reference {b:.0f} MiB")
        # Lower is better here: met when A/B is at most the target.
        ok = "met" if a / b <= PSS_RATIO else "NOT met"
        lines.append(f"  {'peak PSS A/B (at most)':<46} {a / b:>9.2f}x   target {PSS_RATIO:>7.2f}x   {ok}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--regbench", default=os.path.join(REPO, "..", "shared", "bench", "regbench.py"),
                   help="path to regbench.py (default ../shared/bench/regbench.py)")
    p.add_argument("--regbench-python", default=sys.executable,
                   help="the Python that runs regbench and needs aiohttp (default: this one); a separate"
                   " environment keeps aiohttp out of cargohold's")
    p.add_argument("--dir", help="where the data directories go (default: a temporary directory)")
    p.add_argument("--out", default="benchmark-results.json", help="JSON with every figure")
    p.add_argument("--rounds", type=int, help="regbench rounds per scenario (default 5)")
    p.add_argument("--wrk-rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="regbench --quick and one wrk round of 5 s")
    p.add_argument("--scenarios", help="regbench scenarios (default all)")
    p.add_argument("--verify-pulls", choices=("all", "first"), default="first",
                   help="regbench's pull-large hashing: 'first' (default here) keeps its Python client"
                   " from being the ceiling")
    p.add_argument("--skip-limits", action="store_true")
    p.add_argument("--skip-wrk", action="store_true")
    a = p.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="cargohold-bench-", dir=a.dir)
    ports = _free_port(), _free_port()
    procs = []
    result: dict = {}
    try:
        a_proc = start_cargohold(os.path.join(workdir, "cargohold"), ports[0])
        procs.append(a_proc)
        b_proc = start_reference(os.path.join(workdir, "reference"), ports[1], workdir)
        procs.append(b_proc)
        url_a, url_b = (f"http://127.0.0.1:{port}" for port in ports)
        reg_json = os.path.join(workdir, "regbench.json")
        cmd = [a.regbench_python, a.regbench, "--url", url_a, "--compare", url_b,
               "--server-pid", str(a_proc.pid), "--compare-pid", str(b_proc.pid), "--json", reg_json,
               "--verify-pulls", a.verify_pulls]
        if not a.skip_limits:
            cmd += ["--limits", "--limits-dir", workdir]
        if a.quick:
            cmd.append("--quick")
        if a.rounds:
            cmd += ["--rounds", str(a.rounds)]
        if a.scenarios:
            cmd += ["--scenarios", a.scenarios]
        subprocess.run(cmd, check=False)
        with open(reg_json) as f:
            result["regbench"] = json.load(f)
        if not a.skip_wrk:
            wrk_json = os.path.join(workdir, "wrk.json")
            wrk_cmd = [sys.executable, os.path.join(HERE, "wrk_pull.py"), "--url", url_a, "--compare", url_b,
                       "--json", wrk_json, "--rounds", "1" if a.quick else str(a.wrk_rounds)]
            if a.quick:
                wrk_cmd += ["--seconds", "5"]
            subprocess.run(wrk_cmd, check=True)
            with open(wrk_json) as f:
                result["wrk"] = json.load(f)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print("\nagainst the targets of issue 17")
    print("\n".join(summary(result.get("regbench", {}), result.get("wrk", {}))))
    print(f"\nall figures: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
