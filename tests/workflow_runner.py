"""The repository's Snakefile run from the tests: one place for its command line and environment.

Each test study runs in its own working directory (``--directory``) with the repository's Snakefile and a profile
of ``workflow/profiles/``, so the tests never touch the repository's own ``results/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROFILES = ROOT / "workflow" / "profiles"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
# the rules call `python -m rnn_gradients`: the venv's python must come first on PATH (sbatch passes it on)
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def snakemake_command(workdir: Path, *args: str, profile: str | Path = "default", cores: int | None = 2) -> list[str]:
    """``snakemake`` on the repository's Snakefile in ``workdir`` with a workflow profile (a name under
    ``workflow/profiles/`` or a path); ``cores=None`` leaves the core count to the profile (a cluster). ``args``
    come last, so targets go before an option that takes every word after it (``--configfile``, ``--config``)."""
    return [
        str(BIN / "snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--workflow-profile",
        str(PROFILES / profile if isinstance(profile, str) else profile),
        "--directory",
        str(workdir),
        *(["--cores", str(cores)] if cores is not None else []),
        *args,
    ]


def run_snakemake(
    workdir: Path, *args: str, profile: str | Path = "default", cores: int | None = 2, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run :func:`snakemake_command` to the end; its stdout and stderr together in ``.stdout``."""
    return subprocess.run(
        snakemake_command(workdir, *args, profile=profile, cores=cores),
        cwd=workdir,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def new_study(root: Path, config: dict | str | Path) -> Path:
    """``root`` as a study's working directory whose ``config/config.yaml`` is ``config``: a dict (written as YAML
    in its own key order), YAML text written as is, or a config file copied."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    if isinstance(config, Path):
        text = config.read_text()
    else:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    (root / "config" / "config.yaml").write_text(text)
    return root
