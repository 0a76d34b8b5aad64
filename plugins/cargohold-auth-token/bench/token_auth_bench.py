"""What token auth costs per request: ``wrk`` against ``GET`` of a small blob on
a live ``cargohold serve`` (one worker), without auth and with the token
provider, same machine, same run.

    .venv/bin/python plugins/cargohold-auth-token/bench/token_auth_bench.py [--seconds 5] [--connections 16]

Needs ``wrk`` (Debian: ``apt-get install wrk``).  Everything stays on
127.0.0.1; the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from cargohold.testing.auth import write_htpasswd
from cargohold.testing.server import LiveRegistry
from cargohold_auth_token.keygen import write_key_files

BLOB = b"benchmark blob" * 64
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
REPO = "bench/app"


def token_config(directory: Path, url: str) -> str:
    write_key_files(directory, "ec")
    write_htpasswd(directory / "htpasswd", {"bench": "bench"})
    return (f"auth:\n  token:\n    realm: {url}/auth/token\n    service: bench\n    issuer: bench-issuer\n"
            f"    rootcertbundle: {directory}/token.crt\n"
            f"tokenserver:\n  signingkey: {directory}/token.key\n  htpasswd: {directory}/htpasswd\n"
            f"  expiration: 1h\n")


def wrk(url: str, headers: dict, seconds: int, connections: int) -> float:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk got {non2xx.group(1)} error responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    env = {"CARGOHOLD_LOG_ACCESSLOG_DISABLED": "true", "CARGOHOLD_HTTP_WORKERS": "1"}
    with tempfile.TemporaryDirectory() as tmp, LiveRegistry(env=env) as plain:
        secured = LiveRegistry(env=env, config_file=f"{tmp}/config.yml")
        Path(f"{tmp}/config.yml").write_text(token_config(Path(tmp), secured.url))
        with secured:
            token = requests.get(f"{secured.url}/auth/token", params={"service": "bench",
                                 "scope": f"repository:{REPO}:pull,push"}, auth=("bench", "bench"),
                                 timeout=10).json()["token"]
            targets = {"no auth": (plain, {}), "token (ES256)": (secured, {"Authorization": f"Bearer {token}"})}
            for live, headers in targets.values():
                assert requests.post(f"{live.url}/v2/{REPO}/blobs/uploads/?digest={DIGEST}", data=BLOB,
                                     headers=headers).status_code == 201
                assert requests.get(f"{live.url}/v2/{REPO}/blobs/{DIGEST}", headers=headers).content == BLOB
            rates: dict[str, list[float]] = {label: [] for label in targets}
            for _ in range(args.rounds):  # alternate, so background load hits both alike
                for label, (live, headers) in targets.items():
                    rates[label].append(wrk(f"{live.url}/v2/{REPO}/blobs/{DIGEST}", headers, args.seconds,
                                            args.connections))
    medians = {}
    for label, values in rates.items():
        values.sort()
        medians[label] = values[len(values) // 2]
        print(f"{label:<16} {medians[label]:>8.0f} req/s median  (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    print(f"token/no-auth    {medians['token (ES256)'] / medians['no auth']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
