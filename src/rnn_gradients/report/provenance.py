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

from rnn_gradients.report.format import code, escape, fixed, num
from rnn_gradients.report.i18n import msg
from rnn_gradients.report.results import Results

REPORTED_PACKAGES = (
    "rnn-gradients", "torch", "numpy", "pandas", "matplotlib", "seaborn", "snakemake", "nbclient", "jupytext",
    "pypandoc-binary",
)  # fmt: skip


def package_versions(packages: Iterable[str] = REPORTED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed); reads the environment."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
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
    versions: Mapping[str, str | None],
) -> str:
    """The appendix list: renderer, tables, commit, rendering machine, run environments, compute and packages."""
    accuracy = results.accuracy
    hours, seconds = divmod(float(accuracy["wall_time_s"].sum()), 3600)
    compute = (f"{int(hours)} h " if hours else "") + f"{fixed(seconds / 60, 1)} min"
    run_env = ", ".join(
        f"{msg(label)} {', '.join(escape(v) for v in sorted(accuracy[column].dropna().astype(str).unique()))}"
        for column, label in (
            ("torch_version", "appendix.torch"),
            ("device", "appendix.device"),
            ("threads", "appendix.threads"),
        )
        if column in accuracy
    )
    git_line = code(commit) + (" " + msg("appendix.dirty") if dirty else "") if commit else msg("appendix.no_git")
    packages = ", ".join(
        f"{escape(p)} {escape(v) if v is not None else msg('appendix.not_installed')}" for p, v in versions.items()
    )
    return "\n".join(
        [
            msg("appendix.renderer", renderer=escape(renderer)),
            msg("appendix.tables", tables=code(Path(tables).resolve())),
            msg("appendix.commit", commit=git_line),
            msg("appendix.machine", machine=escape(machine)),
            msg("appendix.runs", runs=run_env),
            msg(
                "appendix.compute",
                compute=compute,
                n=len(accuracy),
                ms=num(accuracy["ms_per_step"].median()),
            ),
            msg("appendix.packages", packages=packages),
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
