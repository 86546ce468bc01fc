"""Where a report came from: package versions, git state, the machine, and the appendix that lists them.

The facts about the environment are read by the caller (:func:`package_versions`, :func:`git_state`,
:func:`machine_description`) and passed to :func:`reproducibility_facts`, so that the appendix is a pure function
of its inputs. Every value reaches the page escaped; the config is shown in a fenced block longer than any run of
backticks it holds.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rnn_gradients.report.format import code, escape, num
from rnn_gradients.report.results import Results

REPORTED_PACKAGES = (
    "rnn-gradients", "torch", "numpy", "pandas", "matplotlib", "seaborn", "snakemake", "nbclient", "jupytext",
    "pypandoc-binary",
)  # fmt: skip


def package_versions(packages: Iterable[str] = REPORTED_PACKAGES) -> dict[str, str]:
    """Installed version of each package ("not installed" when absent); reads the environment."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _git(path: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(path: str | Path) -> tuple[str | None, bool]:
    """The commit checked out at ``path`` (None outside a git checkout) and whether the tree has changes."""
    return _git(Path(path), "rev-parse", "HEAD"), bool(_git(Path(path), "status", "--porcelain"))


def machine_description() -> str:
    """Platform, architecture, CPU count and Python version of the machine running this code."""
    return f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def reproducibility_facts(
    results: Results,
    *,
    renderer: str,
    tables: str | Path,
    commit: str | None,
    dirty: bool,
    machine: str,
    versions: Mapping[str, str],
) -> str:
    """The appendix list: renderer, tables, commit, rendering machine, run environments, compute and packages."""
    accuracy = results.accuracy
    hours, seconds = divmod(float(accuracy["wall_time_s"].sum()), 3600)
    compute = (f"{int(hours)} h " if hours else "") + f"{seconds / 60:.1f} min"
    run_env = ", ".join(
        f"{label} {', '.join(escape(v) for v in sorted(accuracy[column].dropna().astype(str).unique()))}"
        for column, label in (("torch_version", "torch"), ("device", "device"), ("threads", "torch threads"))
        if column in accuracy
    )
    git_line = (
        code(commit) + (" (with uncommitted changes)" if dirty else "") if commit else "none (not a git checkout)"
    )
    return "\n".join(
        [
            f"- **Renderer:** {escape(renderer)}.",
            f"- **Study tables:** {code(Path(tables).resolve())}.",
            f"- **Git commit:** {git_line}.",
            f"- **Machine rendering this page:** {escape(machine)}.",
            f"- **Runs:** {run_env}.",
            f"- **Total training compute:** {compute} of wall time over {len(accuracy)} runs "
            f"(sum of `wall_time_s`; median {num(accuracy['ms_per_step'].median())} ms per step).",
            "- **Packages:** " + ", ".join(f"{escape(p)} {escape(v)}" for p, v in versions.items()) + ".",
        ]
    )


def config_yaml(results: Results) -> str:
    """The study config as a fenced YAML block; each strategy lists only its settings that differ from the control.

    Inside a fenced code block Markdown reads nothing, and the fence is longer than any run of backticks in the
    text, so no value can end the block early.
    """
    shown: dict[str, Any] = dict(results.config)
    shown["strategies"] = {name: strategy.params() for name, strategy in results.strategies.items()}
    text = yaml.safe_dump(shown, sort_keys=False, default_flow_style=None, width=80, allow_unicode=True)
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}yaml\n{text}{fence}"
