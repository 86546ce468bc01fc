"""Command line: one subcommand per pipeline stage, so that every Snakemake rule is a cheap ``shell:`` call.

``python -m rnn_gradients generate``  make one task's train/test data file
``python -m rnn_gradients train``     train runs from resolved run specs (one process, one directory each)
``python -m rnn_gradients collect``   gather run directories into the study tables
``python -m rnn_gradients render``    render the Quarto report (quarto, or the offline renderer)

Heavy imports (torch, pandas, jupyter) happen inside each subcommand, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _generate(args: argparse.Namespace) -> int:
    from rnn_gradients.engine.datasets import make_dataset, save_dataset

    dataset = make_dataset(args.task, args.seq_len, args.seed, args.train_size, args.val_size, args.test_size)
    save_dataset(dataset, args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    import json

    from rnn_gradients.engine.run_spec import RunSpec
    from rnn_gradients.engine.training import train_runs

    text = Path(args.specs[1:]).read_text() if args.specs.startswith("@") else args.specs
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--specs is not valid JSON: {err}") from err
    specs = [RunSpec.from_dict(item) for item in (raw if isinstance(raw, list) else [raw])]
    summaries = train_runs(specs, args.data, args.out_dir, threads=args.threads)
    for out_dir, summary in zip(args.out_dir, summaries, strict=True):
        state = (
            f"diverged at step {summary.diverged_step}"
            if summary.diverged
            else ("solved" if summary.solved else "not solved")
        )
        print(f"{out_dir}: {summary.metric} = {summary.value:.4g} (chance {summary.chance:.4g}), {state}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from rnn_gradients.study.tables import collect_tables

    collect_tables(args.summaries, out_dir=args.out_dir, study_config=args.study_config)
    return 0


def _render(args: argparse.Namespace) -> int:
    from rnn_gradients.report.render import render_report

    engine = render_report(args.qmd, out_html=args.out, tables_dir=args.tables, engine=args.engine)
    print(f"rendered {args.out} with {engine}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rnn_gradients", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate one task's train/validation/test dataset file")
    gen.add_argument("--task", required=True)
    gen.add_argument("--seq-len", type=int, required=True, help="sequence length T (the task's delay)")
    gen.add_argument("--seed", type=int, required=True)
    gen.add_argument("--train-size", type=int, required=True)
    gen.add_argument("--val-size", type=int, required=True)
    gen.add_argument("--test-size", type=int, required=True)
    gen.add_argument("--out", type=Path, required=True, help="output .npz file")
    gen.set_defaults(func=_generate)

    train = sub.add_parser("train", help="train runs, each into its own run directory (one process for all)")
    train.add_argument(
        "--specs", required=True, help="resolved run spec(s): a JSON object or list of them, or @file.json"
    )
    train.add_argument("--data", type=Path, nargs="+", required=True, help="each run's dataset file from `generate`")
    train.add_argument("--out-dir", type=Path, nargs="+", required=True, help="each run's directory to create")
    train.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    train.set_defaults(func=_train)

    collect = sub.add_parser("collect", help="gather run directories into the study tables")
    collect.add_argument("--out-dir", type=Path, required=True)
    collect.add_argument("--study-config", required=True, help="the validated study config as JSON")
    collect.add_argument("summaries", nargs="+", type=Path, help="summary.json of every run")
    collect.set_defaults(func=_collect)

    render = sub.add_parser("render", help="render the report to one self-contained HTML file")
    render.add_argument("--qmd", type=Path, required=True)
    render.add_argument("--tables", type=Path, required=True, help="directory of the study tables")
    render.add_argument("--out", type=Path, required=True, help="output HTML file")
    render.add_argument("--engine", choices=("auto", "quarto", "offline"), default="auto")
    render.set_defaults(func=_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rnn_gradients.report.render import RenderError

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RenderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
