"""Dataset files: one task's train, validation and test splits at one delay T and seed, in one ``.npz``.

A :class:`Dataset` holds three splits drawn from independent child streams of ``numpy.random.SeedSequence(seed)``:

- ``train`` — the sequences the optimizer sees (and from which batch-norm population statistics are estimated);
- ``val`` — the validation set: every training decision (early stopping, "solved during training") looks here;
- ``test`` — the held-out test set, touched once per run, at the end: the reported metric comes from it.

Each split has its own stream, so no split depends on another's size. The file is written atomically and
checked against its task's generator when read back.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnn_gradients.engine.tasks import TASKS, Task, check_int, get_task
from rnn_gradients.files import atomic_open

SPLITS: tuple[str, ...] = ("train", "val", "test")
_FORMAT_VERSION = 2


@dataclass(frozen=True, eq=False)
class Dataset:
    """One task's train, validation and test arrays (as returned by :meth:`Task.generate`) and how they were
    drawn."""

    task: str
    seq_len: int
    seed: int
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]


def make_dataset(task: str, seq_len: int, seed: int, train_size: int, val_size: int, test_size: int) -> Dataset:
    """Draw the train, validation and test splits of ``task`` at delay ``seq_len``.

    ``numpy.random.SeedSequence(seed).spawn(3)`` gives three independent streams: train, test, validation (in
    that order, so train and test are the same draws as in a dataset without a validation split).
    """
    task_obj = get_task(task)
    seq_len = task_obj.check_seq_len(seq_len)
    seed = check_int("seed", seed, 0)
    sizes = {split: check_int(f"{split}_size", size, 1) for split, size in
             (("train", train_size), ("val", val_size), ("test", test_size))}  # fmt: skip
    train_seq, test_seq, val_seq = np.random.SeedSequence(seed).spawn(3)
    streams = {"train": train_seq, "val": val_seq, "test": test_seq}
    return Dataset(
        task=task,
        seq_len=seq_len,
        seed=seed,
        **{split: task_obj.generate(seq_len, sizes[split], np.random.default_rng(streams[split])) for split in SPLITS},
    )


def save_dataset(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` to one compressed ``.npz`` file, atomically.

    Keys: ``task``, ``seq_len``, ``seed``, ``format_version`` and ``{split}/{array}`` for each split. The file
    is written to a temporary sibling, then renamed over ``path``, so readers never see a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, np.ndarray] = {
        "task": np.array(dataset.task),
        "seq_len": np.array(dataset.seq_len, dtype=np.int64),
        "seed": np.array(dataset.seed, dtype=np.int64),
        "format_version": np.array(_FORMAT_VERSION, dtype=np.int64),
    }
    for split in SPLITS:
        for key, array in getattr(dataset, split).items():
            payload[f"{split}/{key}"] = array
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **payload)


def _check_split(path: Path, task: Task, seq_len: int, split: str, arrays: dict[str, np.ndarray]) -> None:
    """Compare a loaded split with what the task's generator produces: keys, dtypes, trailing shapes."""
    reference = task.generate(seq_len, 1, np.random.default_rng(0))
    if set(arrays) != set(reference):
        raise ValueError(
            f"{path}: {split} split has arrays {sorted(arrays)}, task {task.name!r} needs {sorted(reference)}"
        )
    for key, ref in reference.items():
        array = arrays[key]
        if array.dtype != ref.dtype or array.ndim != ref.ndim or array.shape[1:] != ref.shape[1:]:
            raise ValueError(
                f"{path}: {split}/{key} has dtype {array.dtype} and shape {array.shape}, expected "
                f"{ref.dtype} and shape (N, {', '.join(map(str, ref.shape[1:]))})"
            )
    sizes = {key: array.shape[0] for key, array in arrays.items()}
    if len(set(sizes.values())) != 1 or min(sizes.values()) < 1:
        raise ValueError(f"{path}: {split} arrays disagree on the number of sequences or are empty: {sizes}")
    for key, (low, high) in task.value_ranges(seq_len).items():
        _check_range(path, f"{split}/{key}", arrays[key], low, high, task.name)


def _check_range(path: Path, name: str, array: np.ndarray, low: float, high: float, task: str) -> None:
    """Every value of ``array`` finite and within ``[low, high]``; ValueError naming the first one that is not
    (a NaN in the inputs would otherwise be trained on and reported as a divergence at step 0)."""
    bad = ~np.isfinite(array) | (array < low) | (array > high)
    if bad.any():
        index = np.unravel_index(int(np.flatnonzero(bad)[0]), array.shape)
        value = array[index].item()
        where = f"sequence {index[0]}" + (f", position {', '.join(map(str, index[1:]))}" if len(index) > 1 else "")
        raise ValueError(
            f"{path}: {name} holds {value!r} at {where}, outside {low:g}..{high:g} (what task {task!r} generates)"
        )


def _scalar(path: Path, contents: dict[str, np.ndarray], key: str, kind: str) -> np.generic:
    """A 0-d metadata entry of numpy kind ``kind`` ("i" integer, "U" string), or ValueError."""
    if key not in contents:
        raise ValueError(f"{path} is not a dataset file: no {key!r} entry")
    value = contents[key]
    if value.shape != () or value.dtype.kind != kind:
        raise ValueError(f"{path}: {key!r} must be a scalar of kind {kind!r}, got {value.dtype} {value.shape}")
    return value[()]


def load_dataset(path: Path) -> Dataset:
    """Read a file written by :func:`save_dataset`.

    FileNotFoundError if ``path`` does not exist; ValueError if it is not such a file (not an ``.npz``,
    missing or unexpected arrays, wrong dtypes or shapes for its task and length).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable dataset .npz file: {err}") from err
    version = int(_scalar(path, contents, "format_version", "i"))
    if version != _FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {version} (this code reads {_FORMAT_VERSION})")
    task_name = str(_scalar(path, contents, "task", "U"))
    if task_name not in TASKS:
        raise ValueError(f"{path}: unknown task {task_name!r}; valid tasks: {', '.join(TASKS)}")
    task = get_task(task_name)
    try:
        seq_len = task.check_seq_len(int(_scalar(path, contents, "seq_len", "i")))
        seed = check_int("seed", int(_scalar(path, contents, "seed", "i")), 0)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    splits: dict[str, dict[str, np.ndarray]] = {split: {} for split in SPLITS}
    for key, array in contents.items():
        split, sep, name = key.partition("/")
        if sep:
            if split not in splits:
                raise ValueError(f"{path}: unexpected array {key!r}")
            splits[split][name] = array
    for split in SPLITS:
        _check_split(path, task, seq_len, split, splits[split])
    return Dataset(task=task_name, seq_len=seq_len, seed=seed, **splits)
