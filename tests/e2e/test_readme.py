"""The README's skopeo examples run as written, against a live registry."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_skopeo_block() -> list[str]:
    text = README.read_text()
    section = text[text.index("**skopeo**"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_skopeo_block_runs(registry, skopeo, tmp_path, monkeypatch):
    commands = readme_skopeo_block()
    assert sum(c.startswith("skopeo copy") for c in commands) >= 4
    monkeypatch.chdir(tmp_path)  # the block uses ./my-layout and ./pulled
    for command in commands:
        argv = shlex.split(command.replace("localhost:5000", skopeo.host))
        if argv[0] == "skopeo":
            skopeo.run(*argv[1:])
        else:
            assert argv[0] == ".venv/bin/python", f"unexpected command in the README block: {command}"
            subprocess.run([sys.executable, *argv[1:]], check=True, capture_output=True, timeout=60)
    tags = skopeo.run("list-tags", "--tls-verify=false", f"docker://{skopeo.host}/team/app").stdout
    assert all(f'"{tag}"' in tags for tag in ("1.0", "multi", "v2s2"))
    assert skopeo.run("list-tags", "--tls-verify=false", f"docker://{skopeo.host}/other/app").stdout.count('"1.0"') == 1
    assert (tmp_path / "pulled" / "index.json").exists()
