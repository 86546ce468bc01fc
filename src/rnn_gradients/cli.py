"""Command line: one subcommand per pipeline stage, so that every Snakemake rule is a cheap ``shell:`` call.

``python -m rnn_gradients generate``  make one task's train/test data file
``python -m rnn_gradients train``     train runs from resolved run specs (one process, one directory each)
``python -m rnn_gradients collect``   gather run directories into the study tables
``python -m rnn_gradients render``    render the Quarto report (quarto, or the offline renderer)
``python -m rnn_gradients figures``   write every report figure as SVG and PDF (results/figures/)
``python -m rnn_gradients check-config``  validate a study config (what the Snakefile checks), without Snakemake
``python -m rnn_gradients compare-verdicts A B``  how many verdicts two studies' tables share, and which differ

Heavy imports (torch, pandas, jupyter) happen inside each subcommand, so ``--help`` stays instant.

Every expected failure — bad input, a missing or malformed file, a full disk or a permission problem, a config
that does not validate, a report that does not render, a job that runs out of memory — ends as ``error: ...``
lines on stderr naming the file and what to do, and exit status 2. Outputs are written atomically
(:mod:`rnn_gradients.files`), so a failed command leaves nothing half-written. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rnn_gradients.engine.run_spec import MAX_SEED
from rnn_gradients.report.i18n import LANGUAGES

EXIT_ERROR = 2
SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"

TORCH = ("numpy", "torch")
TABLES = (*TORCH, "pandas")
FIGURES = (*TABLES, "matplotlib", "seaborn")
"""The extension libraries a subcommand imports (its ``libraries``), imported first with Ctrl-C held back
(:func:`_interrupts_deferred`)."""


def _generate(args: argparse.Namespace) -> int:
    from rnn_gradients.engine.datasets import make_dataset, save_dataset

    dataset = make_dataset(args.task, args.seq_len, args.seed, args.train_size, args.val_size, args.test_size)
    save_dataset(dataset, args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    from rnn_gradients.engine.run_spec import RunSpec
    from rnn_gradients.engine.training import train_runs

    specs = _run_specs(RunSpec, args.specs)
    _check_outputs(args.out_dir, "run directory")
    if args.max_seeds is None:
        summaries = train_runs(specs, args.data, args.out_dir, threads=args.threads)
        for out_dir, summary in zip(args.out_dir, summaries, strict=True):
            print(f"{out_dir}: {_outcome(summary)}")
        return 0

    from rnn_gradients.study.sequential import split_combinations, train_combination

    if not (args.data_pattern and args.out_pattern):
        raise ValueError("train --max-seeds needs --data-pattern and --out-pattern (with {seed}) for extra seeds")
    for combination, runs in split_combinations(specs, args.data, args.out_dir, args.data_pattern, args.out_pattern):
        plan, by_seed = train_combination(
            runs.specs,
            runs.data_paths,
            runs.out_dirs,
            max_seeds=args.max_seeds,
            confidence=args.confidence,
            data_pattern=runs.data_pattern,
            run_dir_pattern=runs.run_dir_pattern,
            threads=args.threads,
        )
        for seed in plan.seeds:
            print(f"{runs.run_dir_pattern.format(seed=seed)}: {_outcome(by_seed[seed])}")
        for line in plan.decisions:
            print(f"verdict: {combination}: {line}", flush=True)
    return 0


def _outcome(summary: Any) -> str:
    if summary.diverged:
        state = f"diverged at step {summary.diverged_step}"
    else:
        state = "solved" if summary.solved else "not solved"
    return f"{summary.metric} = {summary.value:.4g} (chance {summary.chance:.4g}), {state}"


def _check_outputs(paths: Sequence[Path], kind: str) -> None:
    """ValueError naming every output that cannot be written where it belongs (:func:`output_problem`), before any
    work is done."""
    from rnn_gradients.files import output_problem

    problems = [problem for path in paths if (problem := output_problem(path, kind)) is not None]
    if problems:
        raise ValueError("\nerror: ".join(problems))


def _run_specs(spec_class: Any, text: str) -> list[Any]:
    """``--specs``: a JSON object or a list of them (or ``@file.json``) with the RunSpec fields; ValueError saying
    what is wrong."""
    source = "--specs"
    if text.startswith("@"):
        source = text[1:]
        text = Path(source).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON: {err}") from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{source}: a run spec is a JSON object of its fields (or a non-empty list of them)")
    return [_run_spec(spec_class, item, source) for item in items]


def _run_spec(spec_class: Any, data: dict[str, Any], source: str) -> Any:
    """One run spec from its JSON fields; ValueError naming ``source`` and what is missing or wrong."""
    try:
        return spec_class.from_dict(data)
    except TypeError as err:  # a missing required field
        what = re.sub(r"^\S*\(\) ", "", str(err)).replace("positional argument", "field")
        raise ValueError(
            f"{source}: the run spec is {what}" if what.startswith("missing") else f"{source}: {what}"
        ) from None


def _collect(args: argparse.Namespace) -> int:
    from rnn_gradients.study.tables import collect_tables

    collect_tables(args.summaries, out_dir=args.out_dir, study_config=args.study_config)
    return 0


def _render(args: argparse.Namespace) -> int:
    from rnn_gradients.report.render import render_report

    _check_outputs([args.out], "file")
    if args.tables.is_dir():  # (render_report names a missing one)
        from rnn_gradients.report.results import Results

        Results.load(args.tables)  # every table checked before any cell runs: a damaged one is one line naming it
    engine = render_report(
        args.qmd,
        out_html=args.out,
        tables_dir=args.tables,
        engine=args.engine,
        lang=args.lang,
        languages=args.languages,
    )
    print(f"rendered {args.out} with {engine}")
    return 0


def _compare_verdicts(args: argparse.Namespace) -> int:
    from rnn_gradients.study.robustness import compare_verdicts, margin_lines, read_tables

    for tables in (args.tables_a, args.tables_b):
        for name in ("accuracy.csv", "accuracy_summary.csv"):
            if not (tables / name).is_file():
                raise FileNotFoundError(f"{tables / name}: no such table (give the tables directory of a study)")
    (runs_a, summary_a), (runs_b, summary_b) = read_tables(args.tables_a), read_tables(args.tables_b)
    for tables, runs in ((args.tables_a, runs_a), (args.tables_b, runs_b)):
        print(f"{tables}: " + "; ".join(margin_lines(runs)))
    print("\n".join(compare_verdicts(summary_a, summary_b).lines()))
    return 0


def _figures(args: argparse.Namespace) -> int:
    from rnn_gradients.report.figure_files import write_figures

    written = write_figures(args.tables, args.out_dir, args.languages)
    print(f"wrote {len(written)} figure files into {args.out_dir}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from rnn_gradients.study.config import load_study_files
    from rnn_gradients.study.grid import expand_runs

    schema = args.schema or _find_schema()
    study = load_study_files([str(path) for path in args.configfiles], args.config, schema)
    runs = expand_runs(study)
    names = ", ".join(map(str, args.configfiles)) + (", --config" if args.config else "")
    print(f"{names}: a valid study of {len(runs):,} runs")
    return 0


def _find_schema() -> Path:
    """The config schema of the working directory (a checkout), else of the checkout the package lives in."""
    checkout = Path(__file__).resolve().parents[2] / SCHEMA
    for candidate in (SCHEMA, checkout):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no config schema at {SCHEMA} (run in the repository root, or give --schema)")


def _int_at_least(minimum: int, maximum: int | None = None) -> Any:
    """An argparse type: an integer of at least ``minimum`` (and at most ``maximum``; argparse names the option
    when it fails)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is above the maximum {maximum}")
        return value

    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0, MAX_SEED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rnn_gradients", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate one task's train/validation/test dataset file")
    gen.add_argument("--task", required=True)
    gen.add_argument("--seq-len", type=_positive_int, required=True, help="sequence length T (the task's delay)")
    gen.add_argument("--seed", type=_seed, required=True)
    gen.add_argument("--train-size", type=_positive_int, required=True)
    gen.add_argument("--val-size", type=_positive_int, required=True)
    gen.add_argument("--test-size", type=_positive_int, required=True)
    gen.add_argument("--out", type=Path, required=True, help="output .npz file")
    gen.set_defaults(func=_generate, libraries=TORCH)

    train = sub.add_parser("train", help="train runs, each into its own run directory (one process for all)")
    train.add_argument(
        "--specs", required=True, help="resolved run spec(s): a JSON object or list of them, or @file.json"
    )
    train.add_argument("--data", type=Path, nargs="+", required=True, help="each run's dataset file from `generate`")
    train.add_argument("--out-dir", type=Path, nargs="+", required=True, help="each run's directory to create")
    train.add_argument("--threads", type=_positive_int, default=1, help="torch intra-op threads (default 1)")
    train.add_argument(
        "--max-seeds",
        type=_positive_int,
        help="the specs are the seeds of one or more combinations: train each combination's extra seeds while its "
        "verdict is uncertain, up to this many seeds in all (rnn_gradients.study.verdicts)",
    )
    train.add_argument("--confidence", type=float, default=0.9, help="the verdict's interval confidence")
    train.add_argument(
        "--data-pattern", help="an extra seed's dataset file, with {seed} (and {task}, {seq_len} for several)"
    )
    train.add_argument(
        "--out-pattern",
        help="an extra seed's run directory, with {seed} (and {task}, {seq_len}, {cell}, {strategy} for several)",
    )
    train.set_defaults(func=_train, libraries=TORCH)

    collect = sub.add_parser("collect", help="gather run directories into the study tables")
    collect.add_argument("--out-dir", type=Path, required=True)
    collect.add_argument("--study-config", required=True, help="the validated study config as JSON")
    collect.add_argument("summaries", nargs="+", type=Path, help="summary.json of every run")
    collect.set_defaults(func=_collect, libraries=TABLES)

    render = sub.add_parser("render", help="render the report to one self-contained HTML file")
    render.add_argument("--qmd", type=Path, required=True)
    render.add_argument("--tables", type=Path, required=True, help="directory of the study tables")
    render.add_argument("--out", type=Path, required=True, help="output HTML file")
    render.add_argument("--engine", choices=("auto", "quarto", "offline"), default="auto")
    render.add_argument("--lang", choices=LANGUAGES, help="the page's language (default: the document's lang)")
    render.add_argument(
        "--languages",
        nargs="*",
        choices=LANGUAGES,
        default=[],
        help="the languages whose pages are rendered beside this one (report.html, report.es.html, ...): the page "
        "links to them",
    )
    render.set_defaults(func=_render, libraries=TABLES)

    compare = sub.add_parser(
        "compare-verdicts", help="compare two studies' verdicts (e.g. the same grid trained with other seeds)"
    )
    compare.add_argument("tables_a", type=Path, help="a study's tables directory (results/tables)")
    compare.add_argument("tables_b", type=Path, help="the other study's tables directory")
    compare.set_defaults(func=_compare_verdicts, libraries=TABLES)

    figures = sub.add_parser("figures", help="write every report figure as SVG and PDF, one set per language")
    figures.add_argument("--tables", type=Path, required=True, help="directory of the study tables")
    figures.add_argument("--out-dir", type=Path, required=True, help="folder of the figure files")
    figures.add_argument("--languages", nargs="+", choices=LANGUAGES, required=True, help="the figures' languages")
    figures.set_defaults(func=_figures, libraries=FIGURES)

    check = sub.add_parser("check-config", help="validate study config files as the Snakefile does, and say why not")
    check.add_argument("configfiles", nargs="+", type=Path, help="config file(s), merged in order like --configfile")
    check.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, as snakemake's")
    check.add_argument("--schema", type=Path, help=f"the config schema (default: {SCHEMA})")
    check.set_defaults(func=_check_config, libraries=TORCH)
    return parser


def _output(args: argparse.Namespace) -> str | None:
    """What the command writes (named when a write fails without naming its file, e.g. a full disk)."""
    for name in ("out", "out_dir"):
        value = getattr(args, name, None)
        if value is not None:
            return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return None


_ADVICE = {
    errno.ENOSPC: "free disk space and run the command (or snakemake) again",
    errno.EDQUOT: "free space within your disk quota and run it again",
    errno.EFBIG: "the file grew past the size this process may write (ulimit -f); raise that limit",
    errno.EACCES: "make it writable (or readable) for you, or choose another directory",
    errno.EPERM: "make it writable (or readable) for you, or choose another directory",
    errno.EROFS: "the file system is read-only: run the study on a writable one",
    errno.ENOENT: "check the path",
    errno.EISDIR: "it is a directory; remove it or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
}


def _describe_os_error(err: OSError, args: argparse.Namespace) -> str:
    """``file: what happened; what to do``, naming the command's output when the error names no file."""
    what = err.strerror or str(err)
    if err.filename is not None:
        target = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 is not None else "")
    else:
        output = _output(args)
        target = f"writing {output}" if output is not None else f"python -m rnn_gradients {args.command}"
    advice = _ADVICE.get(err.errno or 0)
    atomic = " (outputs are written atomically: nothing half-written was left behind)" if err.errno in (
        errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""  # fmt: skip
    return f"{target}: {what}" + (f"; {advice}" if advice else "") + atomic


def _is_out_of_memory(err: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError (CPU) or torch.OutOfMemoryError (CUDA)."""
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError)
        and (type(err).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(err))
    )


def _error_lines(err: BaseException, args: argparse.Namespace) -> list[str]:
    from rnn_gradients.study.run_reader import RunFileError

    if isinstance(err, RunFileError):
        return [f"error: {problem}" for problem in err.problems] + ([err.advice] if err.advice else [])
    if isinstance(err, OSError):
        return [f"error: {_describe_os_error(err, args)}"]
    if _is_out_of_memory(err):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return [
            f"error: python -m rnn_gradients {args.command} ran out of memory ({first[:200]}); the study's size "
            "limits (limits.max_job_memory_mb in the config) should have refused it: lower T, the data sizes, "
            "the batch or hidden size"
        ]
    data = getattr(args, "data", None)
    datasets = data if isinstance(data, list) else [data] if data is not None else []
    if isinstance(err, ValueError) and any(str(err).startswith(str(path)) for path in datasets):
        return [f"error: {err}; delete it and rerun snakemake, which generates it again"]
    return [f"error: {err}"]


EXIT_INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (SIGINT), as a shell reports it: 128 + 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; expected failures are ``error:`` lines and status 2, Ctrl-C one line and status 130."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        # at any point (importing torch, training, rendering): outputs appear atomically, so nothing is half-written
        print(
            f"error: python -m rnn_gradients {args.command} was interrupted (Ctrl-C); outputs are written "
            "atomically, so nothing half-written was left behind: run the command (or snakemake) again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT blocked in this thread) inside the block; one that came meanwhile is raised as
    KeyboardInterrupt as the block ends.

    A KeyboardInterrupt raised inside the import of an extension module leaves it half-initialized: the next import
    of numpy then fails with a traceback ("cannot load module more than once per process", or a numpy without
    its functions), where the command should have ended with its one line and status 130. The threads started inside
    the block (torch's) inherit the block, so later signals go to this thread, as Python's handler needs. Where the
    platform has no signal masks, nothing is held back.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run(args: argparse.Namespace) -> int:
    with _interrupts_deferred():
        for library in args.libraries:
            importlib.import_module(library)
    import yaml

    from rnn_gradients.report.render import RenderError

    try:
        return args.func(args)
    except (ValueError, OSError, RenderError, yaml.YAMLError, MemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not isinstance(err, RenderError) and not _is_out_of_memory(err):
            raise  # an unexpected RuntimeError is a bug: keep its traceback
        for line in _error_lines(err, args):
            print(line, file=sys.stderr)
        return EXIT_ERROR
