"""The study config: readable validation, the grid and deterministic per-run specs."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from rnn_gradients.engine.cells import CELLS
from rnn_gradients.engine.initialization import INIT_SCHEMES
from rnn_gradients.engine.normalization import NORMS
from rnn_gradients.engine.run_spec import DEVICES, OPTIMIZERS, RunSpec
from rnn_gradients.engine.strategies import STRATEGY_KEYS
from rnn_gradients.engine.tasks import TASKS
from rnn_gradients.study.config import StudyConfigError, load_schema, load_study
from rnn_gradients.study.grid import RUN_KEYS, RunKey, expand_runs, run_dir, run_spec

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
ALL_CELLS = "rnn_tanh, rnn_sigmoid, rnn_relu, lstm, gru"
BUNDLE_KEYS = "clip_norm, clip_value, norm, init, spectral_norm, chrono"


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _problems(config: dict) -> list[str]:
    with pytest.raises(StudyConfigError) as caught:
        load_study(config, SCHEMA)
    message = str(caught.value)
    assert message.startswith("invalid study config (")
    assert all(f"  - {problem}" in message for problem in caught.value.problems)
    return caught.value.problems


def test_default_config_is_valid_and_expands_to_the_full_grid(config):
    study = load_study(config, SCHEMA)
    runs = expand_runs(study)
    # (2 + 2 lengths) x 5 cells x 8 strategies x 3 seeds
    assert len(runs) == 4 * 5 * 8 * 3 == 480
    assert len({run_dir(key) for key in runs}) == len(runs)
    assert runs[0] == RunKey("adding", 10, "rnn_tanh", "none", 0)
    assert runs[-1] == RunKey("temporal_order", 65, "gru", "exploding_clip", 2)


def test_schema_defaults_fill_an_empty_config_and_leave_the_input_alone(config):
    study = load_study({}, SCHEMA)
    assert study["tasks"] == {"adding": [10, 60], "temporal_order": [20, 65]}
    assert study["cells"] == list(CELLS)
    assert study["seeds"] == [0, 1, 2]
    assert study["data"] == {"train_size": 10000, "val_size": 500, "test_size": 1000}
    assert study["training"]["learning_rate"] == {"default": 0.002}
    assert study["strategies"]["none"] == {
        "clip_norm": None,
        "clip_value": None,
        "norm": "none",
        "init": "default",
        "spectral_norm": None,
        "chrono": False,
    }
    before = copy.deepcopy(config)
    load_study(config, SCHEMA)
    assert config == before


def test_every_schema_key_has_a_description_and_a_default():
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = []

    def walk(node: dict, path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            keys.append(f"{path}{name}")
            assert "description" in sub, f"{path}{name} has no description"
            assert "default" in sub, f"{path}{name} has no default"
            walk(sub, f"{path}{name}.")

    walk(schema, "")
    walk(schema["$defs"]["strategy"], "strategies.<name>.")
    assert "training.learning_rate.default" in keys
    assert sorted(schema["$defs"]["strategy"]["properties"]) == sorted(STRATEGY_KEYS)


def test_the_schema_takes_its_names_from_the_package():
    written = SCHEMA.read_text()
    for name in ("rnn_tanh", "temporal_order", "rmsprop", "orthogonal"):
        assert name not in written.split("$defs:")[1].split("strategy:")[0]  # no second list of the names
    schema = load_schema(SCHEMA)
    names = schema["$defs"]
    assert tuple(names["task"]["enum"]) == TASKS
    assert tuple(names["cell"]["enum"]) == CELLS
    assert tuple(names["learning_rate_key"]["enum"]) == ("default", *CELLS)
    assert tuple(names["optimizer"]["enum"]) == OPTIMIZERS
    assert tuple(names["device"]["enum"]) == DEVICES
    assert tuple(names["norm"]["enum"]) == NORMS
    assert tuple(names["init"]["enum"]) == INIT_SCHEMES


BAD_CONFIGS = {
    "unknown cell": (
        lambda c: c["cells"].append("lsmt"),
        ["cells[5]: 'lsmt' is not allowed (did you mean 'lstm'?)", f"allowed: {ALL_CELLS}"],
    ),
    "typo in a strategy key": (
        lambda c: c["strategies"].update(clip_norm={"clip_nrom": 1.0}),
        ["strategies.clip_norm.clip_nrom: unknown key 'clip_nrom'", f"allowed keys: {BUNDLE_KEYS}"],
    ),
    "unknown top-level key": (
        lambda c: c.update(seed=[1]),
        ["seed: unknown key 'seed' (did you mean 'seeds'?)", "allowed keys: tasks, cells, strategies, seeds"],
    ),
    "typo in a training key": (
        lambda c: c["training"].update(optimiser="sgd"),
        ["training.optimiser: unknown key 'optimiser' (did you mean 'optimizer'?)", "steps, batch_size"],
    ),
    "unknown task": (
        lambda c: c["tasks"].update(adding_problem=[20]),
        ["tasks.adding_problem: unknown key 'adding_problem'", "allowed: adding, copy, temporal_order, first_symbol"],
    ),
    "T below 2": (
        lambda c: c["tasks"].update(adding=[1, 20]),
        ["tasks.adding[0]: 1 is below the minimum 2"],
    ),
    "empty list of cells": (
        lambda c: c.update(cells=[]),
        ["cells: the list is empty; give at least 1 entry"],
    ),
    "empty list of lengths": (
        lambda c: c["tasks"].update(adding=[]),
        ["tasks.adding: the list is empty; give at least 1 entry"],
    ),
    "string where an integer belongs": (
        lambda c: c["training"].update(steps="many"),
        ["training.steps: 'many' is a string, expected an integer"],
    ),
    "YAML's 1e-3 is a string": (
        lambda c: c["training"].update(learning_rate={"default": "1e-3"}),
        ["training.learning_rate.default: '1e-3' is a string, expected a number", "write it with a dot, e.g. 0.001"],
    ),
    "strategy that cannot apply to a configured cell": (
        lambda c: c["strategies"].update(chrono_gates={"chrono": True}),
        [
            "strategies.chrono_gates: strategy 'chrono_gates' uses chrono initialization",
            "cannot apply to cell 'rnn_tanh'; it applies to: lstm, gru",
            "the same holds for rnn_sigmoid, rnn_relu",
        ],
    ),
    "bad value in a bundle": (
        lambda c: c["strategies"].update(group_norm={"norm": "group"}),
        ["strategies.group_norm.norm: 'group' is not allowed; allowed: none, layer, batch"],
    ),
    "non-positive clipping threshold": (
        lambda c: c["strategies"].update(clip_norm={"clip_norm": 0}),
        ["strategies.clip_norm.clip_norm: 0 is too small; it must be greater than 0"],
    ),
    "bundle the schema accepts but the strategy rejects": (
        lambda c: c["strategies"].update(scaled={"init": "scaled"}),
        ["strategies.scaled: strategy 'scaled': init 'scaled' needs spectral_norm"],
    ),
    "strategy name that cannot be a directory": (
        lambda c: c["strategies"].update({"Clip-Norm": {}}),
        ["strategies.Clip-Norm: name 'Clip-Norm' must match ^[a-z][a-z0-9_]*$"],
    ),
    "learning rate for a cell that is not configured": (
        lambda c: c.update(cells=["lstm", "gru"], training={"learning_rate": {"default": 0.01, "rnn_relu": 1e-4}}),
        ["training.learning_rate.rnn_relu: an override for cell 'rnn_relu', which is not in cells", "lstm, gru"],
    ),
    "repeated seed": (
        lambda c: c.update(seeds=[0, 1, 0]),
        ["seeds: 0 appears more than once"],
    ),
    "fraction above 1": (
        lambda c: c["training"].update(solved_fraction=2),
        ["training.solved_fraction: 2 is above the maximum 1"],
    ),
    "unknown device": (
        lambda c: c["training"].update(device="gpu"),
        ["training.device: 'gpu' is not allowed; allowed: auto, cpu, cuda"],
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_bad_config_message_names_key_value_and_allowed(config, case):
    mutate, expected = BAD_CONFIGS[case]
    mutate(config)
    problems = _problems(config)
    assert len(problems) == 1, problems
    for text in expected:
        assert text in problems[0]


def test_every_schema_problem_is_reported_at_once(config):
    config["cells"].append("lsmt")
    config["training"]["steps"] = -5
    config["data"]["train_sise"] = 10
    problems = _problems(config)
    assert [p.split(":")[0] for p in problems] == ["cells[5]", "data.train_sise", "training.steps"]
    assert "training.steps: -5 is below the minimum 1" in problems


def test_run_spec_holds_exactly_the_runspec_fields(config):
    study = load_study(config, SCHEMA)
    key = RunKey("adding", 80, "gru", "exploding_clip", 0)
    spec = run_spec(study, key)
    assert set(spec) == {f.name for f in fields(RunSpec)}
    assert RunSpec.from_dict(json.loads(json.dumps(spec))).to_dict() == spec
    assert spec["strategy_params"] == {"init": "scaled", "spectral_norm": 4.0, "clip_norm": 1.0}
    assert (spec["task"], spec["seq_len"], spec["cell"], spec["seed"]) == ("adding", 80, "gru", 0)
    assert RunKey._fields == RUN_KEYS


def test_run_specs_are_deterministic(config):
    first = load_study(config, SCHEMA)
    second = load_study(copy.deepcopy(config), SCHEMA)
    for key in expand_runs(first):
        assert json.dumps(run_spec(first, key), sort_keys=True) == json.dumps(run_spec(second, key), sort_keys=True)


def test_changing_one_bundle_changes_only_that_strategys_specs(config):
    before = load_study(config, SCHEMA)
    config["strategies"]["clip_norm"] = {"clip_norm": 0.5}
    after = load_study(config, SCHEMA)
    changed = {key for key in expand_runs(before) if run_spec(before, key) != run_spec(after, key)}
    assert changed == {key for key in expand_runs(before) if key.strategy == "clip_norm"}
    assert len(changed) == 4 * 5 * 3


def test_equivalent_bundles_give_the_same_spec(config):
    config["strategies"]["explicit_none"] = {"norm": "none", "init": "default", "chrono": False}
    study = load_study(config, SCHEMA)
    plain = run_spec(study, RunKey("adding", 20, "lstm", "none", 0))
    explicit = run_spec(study, RunKey("adding", 20, "lstm", "explicit_none", 0))
    assert plain["strategy_params"] == explicit["strategy_params"] == {}


def test_learning_rate_override_reaches_only_its_cell(config):
    config["training"]["learning_rate"] = {"default": 0.001, "rnn_relu": 0.0001}
    study = load_study(config, SCHEMA)
    rates = {key.cell: run_spec(study, key)["learning_rate"] for key in expand_runs(study)}
    assert rates == {"rnn_tanh": 0.001, "rnn_sigmoid": 0.001, "rnn_relu": 0.0001, "lstm": 0.001, "gru": 0.001}


def test_run_directory_layout():
    key = RunKey("temporal_order", 80, "lstm", "clip_norm", 3)
    assert run_dir(key) == "results/runs/temporal_order/T80/lstm/clip_norm/seed3"
