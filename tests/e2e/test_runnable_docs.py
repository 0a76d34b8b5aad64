"""Every code block the documentation marks runnable runs as written.

A block is marked by its fence: ```` ```sh {.runnable} ```` (MkDocs renders
the class; GitHub shows an ordinary ``sh`` block).  Blocks in README.md and
docs/**/*.md are each run with ``bash -euo pipefail`` in a scratch
directory of their own, against the live registry of this session:

* ``localhost:5000`` in the block is the registry's address;
* ``.venv`` in the scratch directory is the test environment, so
  ``.venv/bin/python`` and ``.venv/bin/cargohold`` work as in a checkout;
* ``skopeo`` is the real binary with the test's own home and policy
  (:class:`cargohold.testing.skopeo.Skopeo`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```sh \{\.runnable\}\n(.*?)^```$", re.S | re.M)


def runnable_blocks() -> list[tuple[str, str]]:
    """``(file:line, script)`` for every runnable block."""
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            blocks.append((f"{path.relative_to(ROOT)}:{line}", m.group(1)))
    return blocks


BLOCKS = runnable_blocks()


def test_the_readme_and_the_docs_have_runnable_blocks():
    places = {where.split(":")[0] for where, _ in BLOCKS}
    assert "README.md" in places and any(p.startswith("docs/") for p in places), places


@pytest.fixture
def sandbox(tmp_path, skopeo):
    """A scratch directory with ``.venv`` and a bin/ whose ``skopeo`` runs
    the real one with the test's global options; the environment to run in."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "skopeo"
    wrapper.write_text("#!/bin/sh\nexec " + shlex.join([skopeo.binary, *skopeo.global_args]) + ' "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, **skopeo.env, "PATH": f"{bin_dir}:{skopeo.env['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("CARGOHOLD_")}
    return tmp_path, env


def run_block(script: str, where: str, sandbox, skopeo) -> subprocess.CompletedProcess:
    cwd, env = sandbox
    script = script.replace("localhost:5000", skopeo.host)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, (f"the runnable block at {where} exited {proc.returncode}\n--- stdout\n"
                                  f"{proc.stdout}\n--- stderr\n{proc.stderr}\n--- registry log\n"
                                  f"{skopeo.registry.log()}")
    return proc


@pytest.mark.parametrize("where,script", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_runnable_block(where, script, sandbox, skopeo):
    run_block(script, where, sandbox, skopeo)


def test_the_readme_push_and_pull_block_stores_what_it_says(sandbox, skopeo):
    """The README's first block pushes tags and pulls a layout: check the
    registry and the scratch directory afterwards, not only exit codes."""
    where, script = next((w, s) for w, s in BLOCKS if w.startswith("README.md"))
    assert sum(line.lstrip().startswith("skopeo copy") for line in script.splitlines()) >= 4
    run_block(script, where, sandbox, skopeo)
    tags = skopeo.run("list-tags", "--tls-verify=false", f"docker://{skopeo.host}/team/app").stdout
    assert all(f'"{tag}"' in tags for tag in ("1.0", "multi", "v2s2"))
    assert '"1.0"' in skopeo.run("list-tags", "--tls-verify=false", f"docker://{skopeo.host}/other/app").stdout
    assert (sandbox[0] / "pulled" / "index.json").exists()
