"""The README's two commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> dict[str, str]:
    """The fenced shell commands that follow the README's "Install and run" and "Test" markers."""
    text = (ROOT / "README.md").read_text()
    found = {}
    for name in ("install-and-run", "test"):
        match = re.search(rf"<!-- command: {name} -->\s*```(?:bash|sh)\n(.+?)\n```", text, re.S)
        assert match, f"README has no command marked {name!r}"
        found[name] = match.group(1).strip()
    return found


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()["test"] in ci.splitlines()


def test_readme_commands_install_with_the_torch_pin():
    commands = readme_commands()
    assert "-c constraints.txt" in commands["install-and-run"]
    assert commands["install-and-run"].rstrip().endswith("snakemake")
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
    assert "pytest" in commands["test"] and "snakemake --lint" in commands["test"]
