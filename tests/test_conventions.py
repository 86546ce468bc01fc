"""The Snakemake conventions a workflow user expects (issue 19): the declared Snakemake floor is the Snakefile's
``min_version``, snakefmt (pinned) keeps the Snakefile and the rules formatted and runs in the README's test
command, the jobs that take seconds are ``localrules``, and ruff's settings mean what they say."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from test_readme import readme_commands
from workflow_runner import ROOT, TINY, new_study

BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement(name: str, requirements: list[str]) -> str:
    return next(item for item in requirements if re.match(rf"{re.escape(name)}\b", item))


def test_the_declared_snakemake_floor_is_the_snakefiles_min_version():
    floor = requirement("snakemake", PYPROJECT["project"]["dependencies"])
    minimum = re.search(r'min_version\("([\d.]+)"\)', (ROOT / "Snakefile").read_text())
    assert minimum, "the Snakefile declares no min_version"
    assert floor == f"snakemake>={minimum.group(1)}"


def test_snakefmt_is_a_pinned_dev_dependency_and_runs_in_the_test_command():
    requirement("snakefmt", PYPROJECT["project"]["optional-dependencies"]["dev"])
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert any(re.fullmatch(r"snakefmt==[\d.]+", line) for line in pins)
    assert "snakefmt --check Snakefile workflow/rules" in readme_commands()["test"]


def test_the_snakefile_and_the_rules_are_formatted():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_reads_python_files_only():
    """The Snakefile and the rules are Snakemake's language, which ruff cannot parse: it lists none of them."""
    result = subprocess.run([str(BIN / "ruff"), "check", "--show-files", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    files = result.stdout.splitlines()
    assert any(line.endswith("cli.py") for line in files)
    assert not [line for line in files if line.endswith((".smk", "Snakefile"))]


def test_the_jobs_that_take_seconds_run_locally(tmp_path):
    """collect and report (and the target rules) are local rules: on a cluster they do not queue behind the
    training jobs; generate and train are cluster jobs. (Snakemake's ``is_local`` says True for every rule where
    no cluster executor runs, so the declared set is read.)"""
    workdir = new_study(tmp_path, TINY)
    script = (
        "from pathlib import Path\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import OutputSettings, ResourceSettings\n"
        "with SnakemakeApi(OutputSettings(quiet={'all'})) as api:\n"
        f"    api = api.workflow(ResourceSettings(cores=1), snakefile=Path({str(ROOT / 'Snakefile')!r}),\n"
        f"                       workdir=Path({str(workdir)!r}))\n"
        "    workflow = api._workflow\n"
        "    print(' '.join(sorted(workflow._localrules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-4:] == ["all", "collect", "report", "tables"], result.stdout
