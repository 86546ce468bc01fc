"""Tests of the synthetic tasks: generator structure, chance baselines against Monte-Carlo estimates,
losses and metrics on hand-built outputs, determinism, and the dataset file round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnn_gradients.engine.datasets import Dataset, load_dataset, make_dataset, save_dataset
from rnn_gradients.engine.tasks import TASKS, TemporalOrderTask, get_task


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def perfect_logits(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return 10.0 * torch.nn.functional.one_hot(labels, n_classes).to(torch.float32)


# --- registry and attributes --------------------------------------------------------------------------------


def test_registry_lists_every_task_with_consistent_attributes() -> None:
    assert TASKS == ("adding", "copy", "temporal_order", "first_symbol")
    expected = {
        "adding": (2, 1, "last", "mse"),
        "copy": (10, 9, "all", "accuracy"),
        "temporal_order": (6, 4, "last", "accuracy"),
        "first_symbol": (4, 2, "last", "accuracy"),
    }
    for name in TASKS:
        task = get_task(name)
        assert task.name == name
        assert (task.input_size, task.output_size, task.readout, task.metric_name) == expected[name]


def test_unknown_task_names_the_value_and_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="'bogus'") as info:
        get_task("bogus")
    assert all(name in str(info.value) for name in TASKS)
    with pytest.raises(ValueError, match="'bogus'"):
        make_dataset("bogus", 10, 0, 5, 5, 5)


@pytest.mark.parametrize("name", TASKS)
def test_bad_lengths_and_sizes_raise_with_the_value_and_the_minimum(name: str) -> None:
    task = get_task(name)
    with pytest.raises(ValueError, match=r"seq_len must be >= 2.*got 1"):
        task.generate(1, 5, rng())
    with pytest.raises(ValueError, match=r"seq_len must be >= 2.*got -3"):
        task.input_length(-3)
    with pytest.raises(ValueError, match=r"seq_len must be >= 2.*got 0"):
        task.chance_loss(0)
    with pytest.raises(ValueError, match=r"n must be >= 1, got 0"):
        task.generate(10, 0, rng())
    with pytest.raises(ValueError, match=r"seq_len must be an integer, got 2\.5"):
        task.generate(2.5, 5, rng())
    with pytest.raises(ValueError, match=r"numpy\.random\.Generator"):
        task.generate(10, 5, 0)
    with pytest.raises(ValueError, match=r"train_size must be >= 1, got 0"):
        make_dataset(name, 10, 0, 0, 5, 5)
    with pytest.raises(ValueError, match=r"val_size must be >= 1, got 0"):
        make_dataset(name, 10, 0, 5, 0, 5)
    with pytest.raises(ValueError, match=r"test_size must be >= 1, got -1"):
        make_dataset(name, 10, 0, 5, 5, -1)
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -7"):
        make_dataset(name, 10, -7, 5, 5, 5)


# --- generator structure ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_len", [2, 3, 7, 50])
def test_adding_markers_values_and_target(seq_len: int) -> None:
    task = get_task("adding")
    arrays = task.generate(seq_len, 4000, rng(1))
    values, positions, target = arrays["values"], arrays["positions"], arrays["target"]
    assert values.dtype == np.float32 and target.dtype == np.float32
    assert values.shape == (4000, seq_len) and positions.shape == (4000, 2) and target.shape == (4000,)
    assert values.min() >= 0.0 and values.max() < 1.0
    half = seq_len // 2
    # Every allowed position is hit, and none outside its half.
    assert set(np.unique(positions[:, 0])) == set(range(half))
    assert set(np.unique(positions[:, 1])) == set(range(half, seq_len))

    x, y = task.to_tensors(arrays)
    assert x.shape == (4000, seq_len, 2) and x.dtype == torch.float32
    assert y.shape == (4000, 1) and y.dtype == torch.float32
    markers = x[:, :, 1]
    assert torch.all(markers.sum(dim=1) == 2)
    assert torch.all((markers == 0) | (markers == 1))
    assert torch.equal(x[:, :, 0], torch.from_numpy(values))
    marked_sum = (x[:, :, 0] * markers).sum(dim=1)
    torch.testing.assert_close(marked_sum, y[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seq_len", [2, 5, 40])
def test_copy_layout(seq_len: int) -> None:
    task = get_task("copy")
    length = seq_len + 20
    assert task.input_length(seq_len) == length
    arrays = task.generate(seq_len, 3000, rng(2))
    symbols, labels = arrays["symbols"], arrays["labels"]
    assert symbols.dtype == np.uint8 and symbols.shape == (3000, length) and labels.shape == (3000, length)
    data = symbols[:, :10]
    assert data.max() <= 7
    assert np.all(symbols[:, 10 : seq_len + 9] == 8)
    assert np.all(symbols[:, seq_len + 9] == 9)
    assert np.all(symbols[:, seq_len + 10 :] == 8)
    assert np.all(labels[:, : seq_len + 10] == 8)
    assert np.array_equal(labels[:, seq_len + 10 :], data)
    assert labels.max() <= 8  # the delimiter is never a target
    counts = np.bincount(data.ravel(), minlength=8) / data.size
    np.testing.assert_allclose(counts, 1 / 8, atol=0.01)

    x, y = task.to_tensors(arrays)
    assert x.shape == (3000, length, 10) and x.dtype == torch.float32
    assert y.shape == (3000, length) and y.dtype == torch.int64
    assert torch.all(x.sum(dim=-1) == 1)
    assert torch.equal(x.argmax(dim=-1), torch.from_numpy(symbols.astype(np.int64)))


@pytest.mark.parametrize("seq_len", [50, 57, 100])
def test_temporal_order_relevant_symbols_sit_in_pascanus_ranges(seq_len: int) -> None:
    task = get_task("temporal_order")
    (lo1, hi1), (lo2, hi2) = TemporalOrderTask.ranges(seq_len)
    assert (lo1, hi1, lo2, hi2) == (
        math.floor(0.1 * seq_len),
        math.floor(0.2 * seq_len),
        math.floor(0.5 * seq_len),
        math.floor(0.6 * seq_len),
    )
    arrays = task.generate(seq_len, 4000, rng(3))
    symbols, labels = arrays["symbols"], arrays["labels"]
    assert symbols.dtype == np.uint8 and symbols.shape == (4000, seq_len) and labels.shape == (4000,)
    assert symbols.max() <= 5
    relevant = symbols <= 1
    assert np.all(relevant.sum(axis=1) == 2)
    rows, cols = np.nonzero(relevant)
    first_pos, second_pos = cols[0::2], cols[1::2]
    assert np.array_equal(rows[0::2], np.arange(4000)) and np.array_equal(rows[1::2], np.arange(4000))
    assert set(np.unique(first_pos)) == set(range(lo1, hi1))
    assert set(np.unique(second_pos)) == set(range(lo2, hi2))
    first, second = symbols[rows[0::2], first_pos], symbols[rows[1::2], second_pos]
    assert np.array_equal(labels, 2 * first + second)
    distractors = symbols[~relevant]
    np.testing.assert_allclose(np.bincount(distractors, minlength=6)[2:] / distractors.size, 0.25, atol=0.01)

    x, y = task.to_tensors(arrays)
    assert x.shape == (4000, seq_len, 6) and y.shape == (4000,) and y.dtype == torch.int64
    assert torch.all(x.sum(dim=-1) == 1)


def test_temporal_order_ranges_are_nonempty_and_disjoint_for_tiny_lengths() -> None:
    task = get_task("temporal_order")
    for seq_len in range(2, 40):
        (lo1, hi1), (lo2, hi2) = TemporalOrderTask.ranges(seq_len)
        assert 0 <= lo1 < hi1 <= lo2 < hi2 <= seq_len, seq_len
        symbols = task.generate(seq_len, 200, rng(seq_len))["symbols"]
        assert np.all((symbols <= 1).sum(axis=1) == 2), seq_len


@pytest.mark.parametrize("seq_len", [2, 30])
def test_first_symbol_layout(seq_len: int) -> None:
    task = get_task("first_symbol")
    arrays = task.generate(seq_len, 2000, rng(4))
    symbols, labels = arrays["symbols"], arrays["labels"]
    assert symbols.shape == (2000, seq_len) and labels.shape == (2000,)
    assert np.array_equal(symbols[:, 0], labels)
    assert set(np.unique(labels)) == {0, 1}
    assert set(np.unique(symbols[:, 1:])) == {2, 3}
    x, y = task.to_tensors(arrays)
    assert x.shape == (2000, seq_len, 4) and torch.equal(y, torch.from_numpy(labels.astype(np.int64)))
    assert torch.all(x.sum(dim=-1) == 1)


# --- chance baselines ---------------------------------------------------------------------------------------


def test_adding_chance_matches_monte_carlo() -> None:
    task = get_task("adding")
    _, y = task.to_tensors(task.generate(50, 20_000, rng(5)))
    ones = torch.ones_like(y)
    assert task.chance_loss(50) == task.chance_metric(50) == task.chance_error(50) == pytest.approx(1 / 6)
    # Standard error of the estimate is ~0.8 % of 1/6; 3 % is about 3.5 standard errors.
    assert task.loss(ones, y).item() == pytest.approx(1 / 6, rel=0.03)
    assert task.metric(ones, y) == pytest.approx(1 / 6, rel=0.03)
    assert task.error(ones, y) == task.metric(ones, y)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(("seq_len", "expected"), [(100, 0.173), (200, 0.0945), (500, 0.0400), (1000, 0.0204)])
def test_copy_chance_loss_matches_the_published_baselines(seq_len: int, expected: float) -> None:
    task = get_task("copy")
    assert task.chance_loss(seq_len) == pytest.approx(10 * math.log(8) / (seq_len + 20))
    assert task.chance_loss(seq_len) == pytest.approx(expected, abs=6e-4)
    assert task.chance_metric(seq_len) == pytest.approx(1 / 8)
    assert task.chance_error(seq_len) == pytest.approx(7 / 8)


def test_copy_memoryless_predictor_reaches_the_chance_loss() -> None:
    task = get_task("copy")
    seq_len = 30
    _, y = task.to_tensors(task.generate(seq_len, 5000, rng(6)))
    probs = torch.zeros(9)
    probs[8] = 1.0
    logits = torch.log(probs).expand(5000, seq_len + 20, 9).clone()
    logits[:, -10:, :] = torch.log(torch.tensor([1 / 8] * 8 + [0.0]))
    assert task.loss(logits, y).item() == pytest.approx(task.chance_loss(seq_len), rel=1e-6)
    constant = torch.zeros(5000, seq_len + 20, 9)
    constant[:, :, 0] = 1.0
    assert task.metric(constant, y) == pytest.approx(1 / 8, abs=0.01)


@pytest.mark.parametrize(("name", "n_classes"), [("temporal_order", 4), ("first_symbol", 2)])
def test_classification_chance_matches_monte_carlo(name: str, n_classes: int) -> None:
    task = get_task(name)
    n = 20_000
    _, y = task.to_tensors(task.generate(40, n, rng(7)))
    # Balanced classes: standard error of each share is <= 0.0035.
    np.testing.assert_allclose(torch.bincount(y, minlength=n_classes).numpy() / n, 1 / n_classes, atol=0.015)
    uniform = torch.zeros(n, n_classes)
    assert task.loss(uniform, y).item() == pytest.approx(math.log(n_classes), rel=1e-6)
    assert task.chance_loss(40) == pytest.approx(math.log(n_classes))
    for cls in range(n_classes):
        constant = perfect_logits(torch.full((n,), cls), n_classes)
        assert task.metric(constant, y) == pytest.approx(task.chance_metric(40), abs=0.015)
        assert task.error(constant, y) == pytest.approx(task.chance_error(40), abs=0.015)
    assert task.chance_metric(40) + task.chance_error(40) == pytest.approx(1.0)
    assert task.chance_error(40) == pytest.approx(1 - 1 / n_classes)


# --- losses and metrics on hand-built outputs ---------------------------------------------------------------


def test_adding_loss_metric_error_on_hand_built_outputs() -> None:
    task = get_task("adding")
    target = torch.tensor([[0.5], [1.5], [1.0]])
    assert task.loss(target.clone(), target).item() == 0.0
    assert task.error(target.clone(), target) == 0.0
    output = target + torch.tensor([[0.1], [-0.2], [0.3]])
    assert task.metric(output, target) == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    output.requires_grad_(True)
    task.loss(output, target).backward()
    torch.testing.assert_close(output.grad, 2 * (output.detach() - target) / 3)
    with pytest.raises(ValueError, match=r"\(3, 1\).*\(3,\)"):
        task.loss(output, target[:, 0])


def test_last_step_classification_on_hand_built_outputs() -> None:
    task = get_task("temporal_order")
    target = torch.tensor([0, 1, 2, 3, 3])
    perfect = perfect_logits(target, 4)
    assert task.metric(perfect, target) == 1.0 and task.error(perfect, target) == 0.0
    assert task.loss(perfect, target).item() < 1e-3
    wrong = perfect_logits((target + 1) % 4, 4)
    assert task.metric(wrong, target) == 0.0 and task.error(wrong, target) == 1.0
    three_right = perfect_logits(torch.tensor([0, 1, 2, 0, 0]), 4)
    assert task.metric(three_right, target) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="temporal_order expects logits"):
        task.loss(torch.zeros(5, 3), target)


def test_copy_metric_scores_only_the_last_ten_steps() -> None:
    task = get_task("copy")
    seq_len = 6
    _, y = task.to_tensors(task.generate(seq_len, 8, rng(8)))
    perfect = perfect_logits(y, 9)
    assert task.metric(perfect, y) == 1.0 and task.error(perfect, y) == 0.0
    assert task.loss(perfect, y).item() < 1e-3
    # Wrong everywhere before the copy phase: the metric does not move, the loss does.
    early_wrong = perfect.clone()
    early_wrong[:, : seq_len + 10] = perfect_logits(torch.zeros(8, seq_len + 10, dtype=torch.int64), 9)
    assert task.metric(early_wrong, y) == 1.0
    assert task.loss(early_wrong, y).item() > 1.0
    late_wrong = perfect.clone()
    late_wrong[:, -10:] = perfect_logits(torch.full((8, 10), 8), 9)  # blanks where symbols belong
    assert task.metric(late_wrong, y) == 0.0 and task.error(late_wrong, y) == 1.0
    with pytest.raises(ValueError, match="copy expects logits"):
        task.metric(perfect[:, -1], y)


# --- datasets -----------------------------------------------------------------------------------------------


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("name", TASKS)
def test_dataset_determinism_and_independence(name: str) -> None:
    first = make_dataset(name, 12, 11, 300, 150, 200)
    again = make_dataset(name, 12, 11, 300, 150, 200)
    assert (first.task, first.seq_len, first.seed) == (name, 12, 11)
    for split in ("train", "val", "test"):
        assert_same_arrays(getattr(first, split), getattr(again, split))
    other = make_dataset(name, 12, 12, 300, 150, 200)
    key = next(iter(first.train))
    assert not np.array_equal(first.train[key], other.train[key])
    assert not np.array_equal(first.test[key], other.test[key])
    assert not np.array_equal(first.train[key][:200], first.test[key])
    assert not np.array_equal(first.val[key], first.test[key][:150])
    assert not np.array_equal(first.val[key], first.train[key][:150])
    # each split has its own stream: no split depends on another's size
    resized = make_dataset(name, 12, 11, 1000, 150, 80)
    assert_same_arrays(first.val, resized.val)
    resized = make_dataset(name, 12, 11, 1000, 60, 200)
    assert_same_arrays(first.test, resized.test)
    resized = make_dataset(name, 12, 11, 300, 60, 90)
    assert_same_arrays(first.train, resized.train)


@pytest.mark.parametrize("name", TASKS)
def test_save_load_round_trip_is_exact(name: str, tmp_path: Path) -> None:
    dataset = make_dataset(name, 9, 5, 40, 20, 30)
    path = tmp_path / "sub" / f"{name}.npz"
    save_dataset(dataset, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    loaded = load_dataset(path)
    assert isinstance(loaded, Dataset)
    assert (loaded.task, loaded.seq_len, loaded.seed) == (name, 9, 5)
    assert isinstance(loaded.seq_len, int) and isinstance(loaded.seed, int) and isinstance(loaded.task, str)
    for split in ("train", "val", "test"):
        assert_same_arrays(getattr(dataset, split), getattr(loaded, split))
    save_dataset(make_dataset(name, 9, 6, 10, 10, 10), path)  # overwrite in place
    assert load_dataset(path).seed == 6


def test_load_missing_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        load_dataset(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"garbage\.npz"):
        load_dataset(garbage)
    no_meta = tmp_path / "no_meta.npz"
    np.savez(no_meta, x=np.zeros(3))
    with pytest.raises(ValueError, match=r"no_meta\.npz"):
        load_dataset(no_meta)

    good = make_dataset("copy", 5, 0, 4, 4, 4)
    payload = {
        "task": np.array("copy"),
        "seq_len": np.array(5),
        "seed": np.array(0),
        "format_version": np.array(2),
        "train/symbols": good.train["symbols"],
        "train/labels": good.train["labels"],
        "val/symbols": good.val["symbols"],
        "val/labels": good.val["labels"],
        "test/symbols": good.test["symbols"],
        "test/labels": good.test["labels"],
    }
    cases = {
        "task": ({"task": np.array("bogus")}, "'bogus'"),
        "length": (
            {"seq_len": np.array(6)},
            r"train/symbols has dtype uint8 and shape \(4, 25\), expected uint8 and shape \(N, 26\)",
        ),
        "dtype": ({"train/labels": good.train["labels"].astype(np.int16)}, "train/labels has dtype int16"),
        "missing": ({"test/labels": None}, r"test split has arrays \['symbols'\]"),
        "sizes": ({"train/labels": good.train["labels"][:3]}, "disagree"),
        "seed": ({"seed": np.array(-1)}, "seed must be >= 0, got -1"),
    }
    for label, (change, message) in cases.items():
        broken = {**payload, **change}
        broken = {key: value for key, value in broken.items() if value is not None}
        path = tmp_path / f"{label}.npz"
        np.savez(path, **broken)
        with pytest.raises(ValueError, match=message):
            load_dataset(path)
    np.savez(tmp_path / "ok.npz", **payload)
    assert_same_arrays(load_dataset(tmp_path / "ok.npz").train, good.train)
