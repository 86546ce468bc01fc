"""Atomic run directories: all or nothing."""

import pytest

from rnn_gradients.files import RunDirectoryWriter, atomic_write_text, dumps_json, read_json


def test_run_directory_appears_only_on_success(tmp_path):
    target = tmp_path / "run"
    target.mkdir()  # Snakemake creates an output's parent before the job starts
    with RunDirectoryWriter(target) as writer:
        writer.write_json("summary.json", {"value": 1.0})
        assert not (target / "summary.json").exists()
    assert read_json(target / "summary.json") == {"value": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_failed_run_leaves_nothing(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(RuntimeError), RunDirectoryWriter(target) as writer:
        writer.write_csv("steps.csv", ["step"], [[0]])
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_directory_of_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / ".tmp-run-abc123"
    stale.mkdir()
    (stale / "steps.csv").write_text("partial")
    with RunDirectoryWriter(tmp_path / "run") as writer:
        writer.write_json("summary.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_json_is_deterministic_and_strict():
    assert dumps_json({"b": float("nan"), "a": 1}) == '{\n  "a": 1,\n  "b": null\n}\n'


def test_atomic_text_and_missing_file_message(tmp_path):
    atomic_write_text(tmp_path / "x" / "f.txt", "hello")
    assert (tmp_path / "x" / "f.txt").read_text() == "hello"
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_json(tmp_path / "missing.json")
