"""The training loop: clipping order, divergence as a result, determinism, run directories, bad arguments."""

import copy
import json
import math

import pandas as pd
import pytest
import torch

from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.run_files import RUN_FILES, EvalRecord, completed_run
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.engine.training import (
    GradientMeter,
    build_model,
    evaluate,
    optimization_step,
    train_run,
    train_runs,
)


def spec(**overrides):
    base = dict(
        task="adding",
        seq_len=8,
        cell="rnn_tanh",
        strategy="none",
        strategy_params={},
        seed=0,
        train_size=128,
        val_size=32,
        test_size=64,
        hidden_size=8,
        batch_size=16,
        steps=20,
        eval_every=10,
        probe_every=10,
        probe_batch=16,
        early_stop=False,
        device="cpu",
    )
    base.update(overrides)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "adding.npz"
    save_dataset(make_dataset("adding", 8, seed=0, train_size=128, val_size=32, test_size=64), path)
    return path


def test_clipped_step_differs_from_unclipped_exactly_as_clip_grad_norm_says():
    task = get_task("adding")
    run = spec()
    dataset = make_dataset("adding", 8, seed=1, train_size=32, val_size=4, test_size=4)
    x, y = task.to_tensors(dataset.train)
    threshold = 0.05
    clip = Strategy.from_dict("clip", {"clip_norm": threshold})
    model = build_model(run, task, clip)
    reference = copy.deepcopy(model)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    row = optimization_step(0, model, optimizer, GradientMeter(model), clip, task, x, y)
    pre, post, clipped, finite = row.grad_norm_pre, row.grad_norm_post, row.clipped, row.finite

    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    task.loss(reference(x), y).backward()
    expected_pre = torch.nn.utils.clip_grad_norm_(list(reference.parameters()), threshold)
    ref_optimizer.step()

    assert finite and clipped
    assert pre == pytest.approx(expected_pre.item(), rel=1e-6)
    assert pre > threshold
    assert post == pytest.approx(threshold, rel=1e-4)
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)

    unclipped = copy.deepcopy(reference)
    row_none = optimization_step(
        0,
        unclipped,
        torch.optim.SGD(unclipped.parameters(), lr=0.1),
        GradientMeter(unclipped),
        Strategy.from_dict("none", {}),
        task,
        x,
        y,
    )
    assert row_none.grad_norm_post == row_none.grad_norm_pre and row_none.clipped is False


def test_per_group_norms_add_up_to_the_global_norm():
    task = get_task("adding")
    strategy = Strategy.from_dict("ln", {"norm": "layer"})
    model = build_model(spec(), task, strategy)
    x, y = task.to_tensors(make_dataset("adding", 8, seed=2, train_size=16, val_size=4, test_size=4).train)
    row = optimization_step(
        0, model, torch.optim.SGD(model.parameters(), lr=0.0), GradientMeter(model), strategy, task, x, y
    )
    groups = [g for g in row.group_norms if not math.isnan(g)]
    assert len(groups) == 6  # weight_ih, weight_hh, bias_ih, bias_hh, head, norm
    assert math.sqrt(sum(g * g for g in groups)) == pytest.approx(row.grad_norm_pre, rel=1e-9)


def test_forced_explosion_is_recorded_as_diverged_not_raised(tmp_path, data_path):
    explode = spec(
        cell="rnn_relu",
        strategy="explode",
        strategy_params={"init": "scaled", "spectral_norm": 60.0},
        seq_len=8,
        learning_rate=1.0,
        optimizer="sgd",
        steps=50,
    )
    summary = train_run(explode, data_path, tmp_path / "run")
    assert summary.diverged is True
    assert isinstance(summary.diverged_step, int)
    assert summary.solved is False
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    last = steps.iloc[-1]
    assert last["step"] == summary.diverged_step
    assert not last["finite"]
    assert steps["finite"].iloc[:-1].all()
    assert summary.steps_run == summary.diverged_step
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["diverged"] is True


def test_same_spec_and_seed_give_byte_identical_outputs(tmp_path, data_path):
    run = spec(strategy="clip", strategy_params={"clip_norm": 0.5}, cell="lstm")
    train_run(run, data_path, tmp_path / "a")
    train_run(run, data_path, tmp_path / "b")
    for name in RUN_FILES:
        if name != "runtime.json":
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other_seed = tmp_path / "seed1.npz"
    save_dataset(make_dataset("adding", 8, seed=1, train_size=128, val_size=32, test_size=64), other_seed)
    train_run(
        spec(strategy="clip", strategy_params={"clip_norm": 0.5}, cell="lstm", seed=1), other_seed, tmp_path / "c"
    )
    assert (tmp_path / "a" / "steps.csv").read_bytes() != (tmp_path / "c" / "steps.csv").read_bytes()


def test_run_directory_contents(tmp_path, data_path):
    summary = train_run(spec(cell="gru"), data_path, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(RUN_FILES)
    assert not list(tmp_path.glob(".tmp-*"))
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert len(steps) == 20 and list(steps["step"]) == list(range(20))
    assert (steps["grad_norm_pre"] == steps["grad_norm_post"]).all() and not steps["clipped"].any()
    probes = pd.read_csv(tmp_path / "run" / "probes.csv")
    assert sorted(probes["probe_step"].unique()) == [0, 10, 20]
    assert (probes.groupby("probe_step")["t"].apply(list) == [list(range(1, 9))] * 3).all()
    assert probes["rms_dphi"].isna().all()  # gated cell: φ' is a vanilla-cell quantity
    evals = pd.read_csv(tmp_path / "run" / "evals.csv")
    assert list(evals.columns) == list(EvalRecord.COLUMNS)
    assert list(evals["step"]) == [0, 10, 20]
    assert evals[["val_loss", "val_metric", "val_error"]].notna().all().all()
    # the test set is touched once, by the final model
    assert evals["test_metric"].isna().tolist() == [True, True, False]
    assert summary.steps_run == 20
    assert summary.chance == pytest.approx(1 / 6)
    assert summary.value == pytest.approx(evals["test_metric"].iloc[-1])
    assert summary.error == summary.value and summary.error_se > 0
    assert math.isfinite(summary.train_error) and summary.train_error_se > 0
    runtime = json.loads((tmp_path / "run" / "runtime.json").read_text())
    assert runtime["threads"] == 1 and runtime["torch_version"] == torch.__version__
    parts = runtime["setup_s"] + runtime["eval_s"] + runtime["probe_s"] + runtime["ms_per_step"] * 20 / 1000
    assert 0 < parts <= runtime["wall_time_s"]
    # where it ran, as far as the numbers depend on it
    assert runtime["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert runtime["cpu_model"] and runtime["libraries"].startswith("MKL ")


def test_runtime_records_the_numerics_settings(tmp_path, data_path, monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    train_run(spec(steps=2), data_path, tmp_path / "run")
    runtime = json.loads((tmp_path / "run" / "runtime.json").read_text())
    assert "MKL_CBWR=COMPATIBLE" in runtime["numerics_settings"]
    assert "ONEDNN_MAX_CPU_ISA" not in runtime["numerics_settings"]


def test_early_stop_ends_a_solved_run(tmp_path, data_path):
    run = spec(cell="lstm", solved_fraction=1.0, stop_fraction=1.0, early_stop=True, steps=200)
    summary = train_run(run, data_path, tmp_path / "run")
    # solved_fraction 1.0 means "at least as good as chance", which the first evaluations reach.
    assert summary.steps_to_solve == summary.steps_run < 200
    evals = pd.read_csv(tmp_path / "run" / "evals.csv")
    assert evals["solved"].iloc[-1] and evals["val_error"].iloc[-1] <= summary.solve_threshold


def test_early_stop_waits_for_the_margin_below_the_threshold(tmp_path, data_path):
    """A run stops at the first evaluation at most stop_fraction x chance, not at the solve threshold."""
    run = spec(cell="lstm", solved_fraction=1.0, stop_fraction=0.95, early_stop=True, steps=400)
    summary = train_run(run, data_path, tmp_path / "run")
    evals = pd.read_csv(tmp_path / "run" / "evals.csv")
    margin = 0.95 * summary.chance_error
    below = evals.index[evals["val_error"] <= margin]
    assert summary.steps_run < 400 and list(below) == [len(evals) - 1]  # stopped at the first one past the margin
    assert summary.steps_to_solve is not None and summary.steps_to_solve < summary.steps_run
    assert evals["solved"].iloc[-1]
    # the verdict is the test set's: solved exactly when the final test error is within the threshold
    assert summary.solved == (summary.error <= summary.solve_threshold)


def test_dataset_must_match_the_run(tmp_path, data_path):
    with pytest.raises(
        ValueError, match="holds task 'adding' at T=8 with seed 0, but the run is 'adding' at T=9 with seed 0"
    ):
        train_run(spec(seq_len=9), data_path, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "adder"}, "unknown task 'adder'.*adding, copy, temporal_order"),
        ({"cell": "rnn_tan"}, "rnn_tan.*rnn_tanh, rnn_sigmoid, rnn_relu, lstm, gru"),
        ({"strategy_params": {"clip_norm": -1.0}}, "clip_norm must be a positive finite number, got -1.0"),
        ({"strategy_params": {"clip_nrom": 1.0}}, "unknown key.*clip_nrom.*allowed keys"),
    ],
)
def test_bad_arguments_name_the_value_and_the_valid_ones(tmp_path, data_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train_run(spec(**overrides), data_path, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_spec_rejects_short_sequences_and_unknown_keys():
    with pytest.raises(ValueError, match="seq_len must be at least 2, got 1"):
        spec(seq_len=1)
    with pytest.raises(ValueError, match="optimizer 'adamw' is not allowed; allowed: adam, rmsprop, sgd"):
        spec(optimizer="adamw")
    with pytest.raises(ValueError, match="unknown key.*lr"):
        RunSpec.from_dict({**spec().to_dict(), "lr": 0.1})
    assert RunSpec.from_json(json.dumps(spec().to_dict())) == spec()


def test_train_runs_keeps_a_run_of_the_same_spec_and_retrains_a_changed_one(tmp_path, data_path):
    first = spec(cell="rnn_tanh", steps=10)
    train_runs([first], [data_path], [tmp_path / "run"])
    runtime = (tmp_path / "run" / "runtime.json").read_bytes()
    kept = train_runs([first], [data_path], [tmp_path / "run"])
    assert (tmp_path / "run" / "runtime.json").read_bytes() == runtime  # not retrained
    assert kept[0] == completed_run(tmp_path / "run", first)
    for changed in (spec(cell="rnn_tanh", steps=11), spec(cell="rnn_tanh", steps=10, engine="another engine")):
        assert completed_run(tmp_path / "run", changed) is None
        train_runs([changed], [data_path], [tmp_path / "run"])
        assert json.loads((tmp_path / "run" / "config.json").read_text()) == changed.to_dict()
    (tmp_path / "run" / "probes.csv").unlink()  # an incomplete directory is no run
    assert completed_run(tmp_path / "run", changed) is None
    with pytest.raises(ValueError, match="2 specs, 1 data files and 2 run directories"):
        train_runs([first, first], [data_path], [tmp_path / "a", tmp_path / "b"])


def test_batch_norm_is_evaluated_with_population_statistics_of_the_current_weights(data_path):
    task = get_task("adding")
    model = build_model(spec(cell="rnn_tanh"), task, Strategy.from_dict("bn", {"norm": "batch"}))
    x, y = task.to_tensors(make_dataset("adding", 8, seed=3, train_size=256, val_size=4, test_size=4).train)
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    # the running estimates have never seen data (mean 0, variance 1), so eval mode with them is stale
    stale = evaluate(model, task, x, y, population=x[:0])
    fresh = evaluate(model, task, x, y, population=x)
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, before[name])  # training state restored
    # with population statistics of the same sequences, eval mode equals training mode on the whole set
    model.train()
    with torch.no_grad():
        batch_mode = task.loss(model(x), y).item()
    assert fresh.loss == pytest.approx(batch_mode, rel=1e-4)
    assert stale.loss != pytest.approx(batch_mode, rel=1e-2)
