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
from rnn_gradients.study.config import (
    LENGTHS_KEY,
    SCOPE_KEY,
    StudyConfigError,
    load_schema,
    load_study,
    strategy_cells,
    strategy_lengths,
)
from rnn_gradients.study.grid import RUN_KEYS, RunKey, expand_runs, run_dir, run_spec
from rnn_gradients.study.limits import stored_bytes_per_sequence, training_memory

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


def test_default_config_is_valid_and_expands_to_its_grid(config):
    study = load_study(config, SCHEMA)
    runs = expand_runs(study)
    # the control at (2 + 2 lengths) x 5 cells; at the 2 longest lengths, 5 remedies x the 3 vanilla cells and
    # the 2 scaled initializations x 5 cells; x 3 seeds
    assert len(runs) == (4 * 5 + 2 * 3 * 5 + 2 * 5 * 2) * 3 == 210
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
        "cells": None,
        "lengths": "all",
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
    # a bundle's keys are the interventions of a Strategy, and its scope (the cells it trains)
    assert sorted(schema["$defs"]["strategy"]["properties"]) == sorted([*STRATEGY_KEYS, SCOPE_KEY, LENGTHS_KEY])


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
        lambda c: c.update(
            cells=["rnn_tanh", "lstm"], strategies={"none": {}}, training={"learning_rate": {"gru": 1e-4}}
        ),
        ["training.learning_rate.gru: an override for cell 'gru', which is not in cells", "rnn_tanh, lstm"],
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
    "a float where an integer belongs": (
        lambda c: c["training"].update(hidden_size=4.0),
        ["training.hidden_size: 4.0 is a number with a decimal point, expected an integer; write 4"],
    ),
    "quoted integer": (
        lambda c: c["training"].update(steps="5"),
        ["training.steps: '5' is a string, expected an integer; write 5 (no quotes, no decimal point)"],
    ),
    "NaN passes exclusiveMinimum in JSON Schema": (
        lambda c: c["training"].update(solved_fraction=float("nan")),
        ["training.solved_fraction: nan is not a finite number; expected a number"],
    ),
    "infinite clipping threshold": (
        lambda c: c["strategies"].update(clip_norm={"clip_norm": float("inf")}),
        ["strategies.clip_norm.clip_norm: inf is not a finite number; expected a number or null"],
    ),
    "strategy name with a trailing newline": (
        lambda c: c["strategies"].update({"none\n": {}}),
        ["strategies['none\\n']: name 'none\\n' must match ^[a-z][a-z0-9_]*$"],
    ),
    "key YAML read as a boolean": (
        lambda c: c["strategies"].update({True: {}}),
        ["strategies[True]: the key True is a boolean, not a name", "write it in quotes"],
    ),
    "unknown training job layout": (
        lambda c: c.update(jobs={"training": "strategy"}),
        ["jobs.training: 'strategy' is not allowed; allowed: cell, combination"],
    ),
    "a training job too large for one command line": (
        lambda c: c.update(seeds=list(range(30))),
        [
            "jobs.training: the training job train_adding_T60_rnn_tanh would pass its 240 runs to one command of "
            "about 120 KiB, more than the 117 KiB a command may have (Linux takes at most 128 KiB)",
            "set jobs.training: combination (one job per combination; allowed: cell, combination)",
        ],
    ),
    "more runs than the limit": (
        lambda c: c.update(seeds=list(range(13)), limits={"max_runs": 2000}),
        ["the study has 2,080 runs (4 task lengths × 5 cells × 8 strategies × 13 seeds)", "limits.max_runs = 2,000"],
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


def test_one_job_per_combination_keeps_each_command_short(config):
    """The 30 seeds refused above in one job per task, T and cell fit one job per combination."""
    load_study({**config, "seeds": list(range(30)), "jobs": {"training": "combination"}}, SCHEMA)


def test_every_schema_problem_is_reported_at_once(config):
    config["cells"].append("lsmt")
    config["training"]["steps"] = -5
    config["data"]["train_sise"] = 10
    problems = _problems(config)
    assert [p.split(":")[0] for p in problems] == ["cells[5]", "data.train_sise", "training.steps"]
    assert "training.steps: -5 is below the minimum 1" in problems


def test_the_default_study_and_a_cluster_sized_study_stay_within_the_default_limits(config):
    load_study({**config, "seeds": [0, 1, 2]}, SCHEMA)
    lengths = [10, 60, 100, 300, 1000]
    cluster = {**config, "tasks": dict.fromkeys(("adding", "temporal_order", "copy", "first_symbol"), lengths)}
    cluster["seeds"] = list(range(6))  # 4,800 runs
    problems = _problems(cluster)
    # only collect, which holds every step of every run, needs the memory limit raised
    assert len(problems) == 1 and problems[0].startswith("collecting the study's 4,800 runs"), problems
    load_study({**cluster, "limits": {"max_job_memory_mb": 24000}}, SCHEMA)


def test_memory_and_data_estimates_grow_with_the_study(config):
    study = load_study(config, SCHEMA)
    small = sum(training_memory(study, "adding", 60).values())
    longer = sum(training_memory(study, "adding", 120).values())
    wider = sum(
        training_memory({**study, "training": {**study["training"], "hidden_size": 128}}, "adding", 60).values()
    )
    assert small < longer and small < wider
    assert stored_bytes_per_sequence("adding", 1000) == 1000 * 4 + 2 * 4 + 4  # float32 values, int32 positions, target
    assert stored_bytes_per_sequence("copy", 100) == 2 * (100 + 20)  # uint8 symbols and labels


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
    config["strategies"]["clip_norm"]["clip_norm"] = 0.5
    after = load_study(config, SCHEMA)
    changed = {key for key in expand_runs(before) if run_spec(before, key) != run_spec(after, key)}
    assert changed == {key for key in expand_runs(before) if key.strategy == "clip_norm"}
    assert len(changed) == 2 * 3 * 3  # the longest T of each task x the vanilla cells x the seeds


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


def test_a_strategy_for_some_cells_makes_the_grid_partial(config):
    config["strategies"]["chrono"] = {"chrono": True, "cells": ["gru", "lstm"]}
    study = load_study(config, SCHEMA)
    runs = expand_runs(study)
    chrono = [key for key in runs if key.strategy == "chrono"]
    # the default grid (test_default_config_is_valid_and_expands_to_its_grid) and chrono's runs
    assert len(runs) == 210 + len(chrono)
    assert {key.cell for key in chrono} == {"lstm", "gru"} and len(chrono) == 4 * 2 * 3
    assert run_spec(study, chrono[0])["strategy_params"] == {"chrono": True}  # a scope, not an intervention
    assert strategy_cells(study, "chrono") == ["lstm", "gru"]  # in the order of cells
    assert strategy_cells(study, "none") == study["cells"]


def test_a_strategy_scope_must_name_cells_of_the_study_that_it_applies_to(config):
    config["strategies"]["chrono"] = {"chrono": True, "cells": ["lstm", "rnn_tanh"]}
    (problem,) = _problems(config)
    assert problem.startswith("strategies.chrono: strategy 'chrono' uses chrono initialization")
    assert "cannot apply to cell 'rnn_tanh'" in problem and "give the strategy a cells: list without" in problem
    config["cells"] = ["rnn_tanh", "lstm"]
    config["strategies"] = {"none": {}, "chrono": {"chrono": True, "cells": ["gru"]}}
    assert _problems(config) == ["strategies.chrono.cells: gru not in cells; the study's cells: rnn_tanh, lstm"]
    config["strategies"]["chrono"] = {"chrono": True, "cells": []}
    assert _problems(config)[0].startswith("strategies.chrono.cells: the list is empty")


def test_a_strategy_at_the_longest_length_only_makes_the_grid_partial(config):
    config["strategies"]["late"] = {"clip_norm": 2.0, "lengths": "longest"}
    study = load_study(config, SCHEMA)
    late = [key for key in expand_runs(study) if key.strategy == "late"]
    assert {(key.task, key.seq_len) for key in late} == {("adding", 60), ("temporal_order", 65)}
    assert run_spec(study, late[0])["strategy_params"] == {"clip_norm": 2.0}  # a scope, not an intervention
    assert strategy_lengths(study, "late", "adding") == [60]
    assert strategy_lengths(study, "none", "adding") == [10, 60]


def test_a_lengths_scope_names_its_allowed_values(config):
    config["strategies"]["late"] = {"clip_norm": 2.0, "lengths": "long"}
    with pytest.raises(StudyConfigError, match="strategies.late.lengths.*'long'.*all, longest"):
        load_study(config, SCHEMA)
