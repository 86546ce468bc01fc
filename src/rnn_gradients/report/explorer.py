"""The report's explorer: every run of the study in interactive charts that work offline, from a file.

The reader picks a task, T, and two cell × strategy combinations side by side (selectors bound to Vega-Lite
parameters), and sees for every seed of each: ‖∂L/∂h_t‖ against the distance k at the probe a slider picks (the
other probes faint behind it), the training loss and the pre-clip gradient norm against the step (log scale; the
clip threshold and the divergence marked), and the validation error against the step with the solve threshold and
the run's verdict. Tooltips give the values, in the page's language and number format (the message catalogues,
and a d3 number locale built from them).

The page stays self-contained: the Vega, Vega-Lite and Vega-Embed JavaScript comes from ``vl-convert-python``
(:func:`vl_convert.javascript_bundle`) and is inlined once, the data are inlined as JSON in the page, and the
embed's actions that would open another host (the online editor) are off. The data are downsampled so that the
default study's page grows by well under 3 MB: at most :data:`MAX_STEPS` log-spaced steps per training trace and
:data:`MAX_DISTANCES` distances per gradient-flow trace, numbers to :data:`DIGITS` significant digits, one row per
trace with its points as arrays (Vega-Lite's ``flatten`` expands them in the browser).

The validation curves come from ``evaluations.csv`` (:data:`~rnn_gradients.study.tables.TABLE_FILES`); tables
collected before it existed give an explorer without them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from rnn_gradients.report.i18n import msg
from rnn_gradients.report.results import Results
from rnn_gradients.study.grid import RUN_KEYS

MAX_STEPS = 120
"""The most points of one run's loss, gradient-norm or validation-error trace (log-spaced steps)."""
MAX_DISTANCES = 40
"""The most points of one probe's ‖∂L/∂h_t‖ against k (evenly spaced distances, the first and last kept)."""
DIGITS = 3
"""Significant digits of every number in the explorer's data."""
ELEMENT_ID = "rnn-explorer"
SIDES = ("a", "b")
WIDTH, HEIGHT = 240, 150
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"


def _round(x: float) -> float | None:
    """``x`` to :data:`DIGITS` significant digits; None where it is missing or not finite."""
    if x is None or x is pd.NA or not math.isfinite(float(x)):
        return None
    return float(f"{float(x):.{DIGITS - 1}e}")


def log_spaced(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` indices of ``range(n)``, log-spaced (dense early, sparse late), the first and last kept."""
    if n <= limit:
        return np.arange(n)
    picked = np.unique(np.round(np.geomspace(1, n, limit)).astype(int) - 1)
    return np.union1d(picked, [0, n - 1])


def even_spaced(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced indices of ``range(n)``, the first and last kept."""
    return np.arange(n) if n <= limit else np.unique(np.round(np.linspace(0, n - 1, limit)).astype(int))


def _positive_or_none(values: Iterable[Any]) -> list[float | None]:
    """The values rounded, None where one is missing, not finite or not positive (a log scale shows no other)."""
    rounded = [_round(v) for v in values]
    return [v if v is not None and v > 0 else None for v in rounded]


def verdict_text(row: pd.Series) -> str:
    """A run's verdict as the explorer's legend and tooltips say it."""
    if bool(row["diverged"]):
        step = row.get("diverged_step")
        return msg("explorer.verdict.diverged", step=msg("explorer.unknown") if pd.isna(step) else int(step))
    return msg("explorer.verdict.solved" if bool(row["solved"]) else "explorer.verdict.failed")


def explorer_data(results: Results, evaluations: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    """The explorer's four datasets: ``runs`` (one row per run: its keys, clip threshold, divergence, solve
    threshold, verdict, the distances ``k`` its probes are drawn at), ``flow`` (one row per probe: ‖∂L/∂h_t‖ at
    those distances), ``train`` (one row per run: its
    steps, the loss and the pre-clip gradient norm at each) and ``evals``
    (validation-error traces), the traces as arrays of downsampled points."""
    runs_table = results.in_order(results.accuracy)
    index = {tuple(row): i for i, row in enumerate(runs_table[list(RUN_KEYS)].itertuples(index=False))}
    runs = []
    for i, row in runs_table.iterrows():
        strategy = results.strategies.get(str(row["strategy"]))
        clip = strategy.clip_norm if strategy is not None else None
        diverged = int(row["diverged_step"]) if bool(row["diverged"]) and not pd.isna(row["diverged_step"]) else None
        runs.append(
            {
                "r": int(i),
                "task": str(row["task"]),
                "T": int(row["seq_len"]),
                "cell": str(row["cell"]),
                "strategy": str(row["strategy"]),
                "seed": int(row["seed"]),
                "clip": clip,
                "div": diverged,
                "thr": _round(row["solve_threshold"]),
                "verdict": verdict_text(row),
                "k": [],  # the distances of its gradient-flow probes, filled in below
                "n": 0,  # its last probe's number
            }
        )

    def run_of(keys: Sequence[Any]) -> int | None:
        return index.get(tuple(keys))

    flow = []
    probes = results.gradient_flow.sort_values([*RUN_KEYS, "probe_step", "distance"], kind="stable")
    for keys, run in probes.groupby(list(RUN_KEYS), sort=False):
        r = run_of(keys)
        if r is None:
            continue
        # every probe of a run has the same distances: they are stored once, with the run (``k``)
        distances = np.sort(run["distance"].unique())
        chosen = distances[even_spaced(len(distances), MAX_DISTANCES)]
        by_probe = run[run["distance"].isin(chosen)].groupby("probe_step", sort=True)
        runs[r].update(k=[int(k) for k in chosen], n=by_probe.ngroups - 1)
        for number, (step, probe) in enumerate(by_probe):
            values = probe.set_index("distance")["grad_norm_h"].reindex(chosen)
            flow.append({"r": r, "p": int(step), "i": number, "g": _positive_or_none(values)})

    train = []
    for keys, run in results.gradient_norms.groupby(list(RUN_KEYS), sort=False):
        r = run_of(keys)
        chosen = run.iloc[log_spaced(len(run), MAX_STEPS)]
        if r is not None and len(chosen):
            loss, grad = (_positive_or_none(chosen[column]) for column in ("loss", "grad_norm_pre"))
            train.append({"r": r, "s": [int(x) for x in chosen["step"]], "l": loss, "g": grad})

    evals = []
    if evaluations is not None:
        for keys, run in evaluations.groupby(list(RUN_KEYS), sort=False):
            r = run_of((str(keys[0]), int(keys[1]), str(keys[2]), str(keys[3]), int(keys[4])))
            finite = run[np.isfinite(pd.to_numeric(run["val_error"]).to_numpy(dtype=float))]
            chosen = finite.iloc[log_spaced(len(finite), MAX_STEPS)]
            if r is not None and len(chosen):
                s = [int(x) for x in chosen["step"]]
                e = [_round(x) for x in chosen["val_error"]]
                evals.append({"r": r, "s": s, "e": e})
    return {"runs": runs, "flow": flow, "train": train, "evals": evals}


def read_evaluations(tables_dir: str | Path) -> pd.DataFrame | None:
    """``evaluations.csv`` of the tables directory, or None where the tables were collected without it."""
    path = Path(tables_dir) / "evaluations.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"task": str, "cell": str, "strategy": str})


def _side_filter(side: str) -> str:
    return (
        f"datum.task === ex_task && datum.T === toNumber(ex_T) && datum.cell === ex_cell_{side}"
        f" && datum.strategy === ex_strategy_{side}"
    )


LOOKED_UP = ("task", "T", "cell", "strategy", "seed", "verdict")
"""The fields of its run that every point of a curve looks up (``runs``): the keys the selectors filter on."""


def _with_run(name: str, side: str, flatten: Sequence[str]) -> dict[str, Any]:
    """A layer's data and its first transforms: the dataset ``name``, its run's keys looked up, the side's runs."""
    lookup = {
        "lookup": "r",
        "from": {"data": {"name": "runs"}, "key": "r", "fields": [*LOOKED_UP, *(["k", "n"] if name == "flow" else [])]},
    }
    transforms: list[dict[str, Any]] = [lookup, {"filter": _side_filter(side)}]
    if flatten:
        transforms += [{"flatten": list(flatten)}, {"filter": f"isValid(datum.{flatten[-1]})"}]
    return {"data": {"name": name}, "transform": transforms}


def _seed_color(seeds: Sequence[int]) -> dict[str, Any]:
    return {
        "field": "seed",
        "type": "nominal",
        "title": msg("explorer.axis.seed"),
        "scale": {"domain": list(seeds), "scheme": "tableau10"},
        "legend": {"orient": "bottom", "direction": "horizontal"},
    }


def _tooltip(*fields: tuple[str, str, str | None]) -> list[dict[str, Any]]:
    """Tooltip entries (field, title message key, d3 format or None)."""
    entries = []
    for field, key, fmt in fields:
        entry: dict[str, Any] = {"field": field, "title": msg(key)}
        if fmt:
            entry.update(type="quantitative", format=fmt)
        else:
            entry["type"] = "nominal"
        entries.append(entry)
    return entries


def _log_y(field: str, title_key: str) -> dict[str, Any]:
    """A log-scale y axis, its domain extended to powers of ten and labelled at them (``0.1``, ``1e−7``), in the
    page's number format."""
    mantissa = "datum.value / pow(10, floor(log(datum.value) / LN10 + 1e-9))"
    shown = f"abs({mantissa} - 1) < 1e-6"
    plain = "datum.value >= 0.001 && datum.value < 10000"
    label = f"{shown} ? ({plain} ? format(datum.value, '~g') : format(datum.value, '.0e')) : ''"
    axis = {"labelExpr": label, "tickCount": 6}
    scale = {"type": "log", "nice": True}
    return {"field": field, "type": "quantitative", "scale": scale, "title": msg(title_key), "axis": axis}


def _flow_chart(side: str, seeds: Sequence[int]) -> dict[str, Any]:
    x = {"field": "k", "type": "quantitative", "title": msg("explorer.axis.distance")}
    return {
        "title": msg("explorer.title.flow"),
        "width": WIDTH,
        "height": HEIGHT,
        "layer": [
            {
                **_with_run("flow", side, ("k", "g")),
                "mark": {"type": "line", "color": "#bbbbbb", "strokeWidth": 1, "opacity": 0.6},
                "encoding": {
                    "x": x,
                    "y": _log_y("g", "explorer.axis.grad_h"),
                    "detail": [{"field": "r"}, {"field": "p"}],
                },
            },
            {
                **_with_run("flow", side, ()),
                "mark": {"type": "line", "point": True, "strokeWidth": 2},
                "encoding": {
                    "x": x,
                    "y": _log_y("g", "explorer.axis.grad_h"),
                    "color": _seed_color(seeds),
                    "detail": {"field": "r"},
                    "tooltip": _tooltip(
                        ("seed", "explorer.axis.seed", None),
                        ("p", "explorer.axis.probe_step", "d"),
                        ("k", "explorer.axis.distance", "d"),
                        ("g", "explorer.axis.grad_h", ".3~e"),
                    ),
                },
            },
        ],
    }


def _with_current_probe(layer: dict[str, Any]) -> dict[str, Any]:
    layer["transform"] = [
        *layer["transform"],
        {"filter": "datum.i === min(ex_probe, datum.n)"},
        {"flatten": ["k", "g"]},
        {"filter": "isValid(datum.g)"},
    ]
    return layer


def _train_chart(side: str, quantity: str, seeds: Sequence[int]) -> dict[str, Any]:
    """The loss (``quantity`` "loss") or pre-clip gradient norm ("grad") of every seed against the step."""
    y_key = "explorer.axis.loss" if quantity == "loss" else "explorer.axis.grad_norm"
    x = {"field": "s", "type": "quantitative", "title": msg("explorer.axis.step")}
    field = "l" if quantity == "loss" else "g"
    line = _with_run("train", side, ("s", field))
    line["transform"] = [
        *line["transform"],
        {"filter": f"isValid(datum.{field})"},
        {"calculate": f"datum.{field}", "as": "v"},
    ]
    layers: list[dict[str, Any]] = [
        {
            **line,
            "mark": {"type": "line", "strokeWidth": 1.5},
            "encoding": {
                "x": x,
                "y": _log_y("v", y_key),
                "color": _seed_color(seeds),
                "tooltip": _tooltip(
                    ("seed", "explorer.axis.seed", None), ("s", "explorer.axis.step", "d"), ("v", y_key, ".3~e")
                ),
            },
        },
        _divergence_layer(side),
    ]
    if quantity == "grad":
        clip = _with_run("runs", side, ())
        clip["transform"] = [{"filter": _side_filter(side)}, {"filter": "isValid(datum.clip)"}]
        layers.append(
            {
                **clip,
                "mark": {"type": "rule", "strokeDash": [6, 3], "color": "#444444"},
                "encoding": {
                    "y": {"field": "clip", "type": "quantitative"},
                    "tooltip": _tooltip(("clip", "explorer.mark.clip", ".3~g")),
                },
            }
        )
    title = "explorer.title.loss" if quantity == "loss" else "explorer.title.grad"
    return {"title": msg(title), "width": WIDTH, "height": HEIGHT, "layer": layers}


def _divergence_layer(side: str) -> dict[str, Any]:
    """A red dashed rule at the step where a seed diverged."""
    return {
        "data": {"name": "runs"},
        "transform": [{"filter": _side_filter(side)}, {"filter": "isValid(datum.div)"}],
        "mark": {"type": "rule", "color": "#c0392b", "strokeDash": [2, 2], "strokeWidth": 2},
        "encoding": {
            "x": {"field": "div", "type": "quantitative"},
            "tooltip": _tooltip(("seed", "explorer.axis.seed", None), ("div", "explorer.mark.diverged", "d")),
        },
    }


def _eval_chart(side: str, seeds: Sequence[int]) -> dict[str, Any]:
    x = {"field": "s", "type": "quantitative", "title": msg("explorer.axis.step")}
    y = {"field": "e", "type": "quantitative", "title": msg("explorer.axis.val_error")}
    line = _with_run("evals", side, ("s", "e"))
    end = _with_run("evals", side, ())
    end["transform"] = [
        *end["transform"],
        {"calculate": "peek(datum.s)", "as": "last_s"},
        {"calculate": "peek(datum.e)", "as": "last_e"},
    ]
    threshold = {
        "data": {"name": "runs"},
        "transform": [{"filter": _side_filter(side)}, {"filter": "isValid(datum.thr)"}],
    }
    return {
        "title": msg("explorer.title.val"),
        "width": WIDTH,
        "height": HEIGHT,
        "layer": [
            {
                **threshold,
                "mark": {"type": "rule", "strokeDash": [6, 3], "color": "#444444"},
                "encoding": {
                    "y": {"field": "thr", "type": "quantitative"},
                    "tooltip": _tooltip(("thr", "explorer.mark.threshold", ".3~g")),
                },
            },
            {
                **line,
                "mark": {"type": "line", "point": True, "strokeWidth": 1.5},
                "encoding": {
                    "x": x,
                    "y": y,
                    "color": _seed_color(seeds),
                    "tooltip": _tooltip(
                        ("seed", "explorer.axis.seed", None),
                        ("s", "explorer.axis.step", "d"),
                        ("e", "explorer.axis.val_error", ".3~g"),
                        ("verdict", "explorer.axis.verdict", None),
                    ),
                },
            },
            {
                **end,
                "mark": {"type": "text", "align": "right", "baseline": "bottom", "dx": -2, "dy": -6, "fontSize": 11},
                "encoding": {
                    "x": {"field": "last_s", "type": "quantitative"},
                    "y": {"field": "last_e", "type": "quantitative"},
                    "text": {"field": "verdict"},
                    "color": _seed_color(seeds),
                },
            },
            _divergence_layer(side),
        ],
    }


def trained_lengths(runs: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """``"task|cell|strategy"`` → the lengths T it was trained at, ascending."""
    lengths: dict[str, set[int]] = {}
    for run in runs:
        lengths.setdefault(f"{run['task']}|{run['cell']}|{run['strategy']}", set()).add(int(run["T"]))
    return {key: sorted(found) for key, found in lengths.items()}


def _column_title(side: str) -> dict[str, str]:
    """The column's title: its cell and strategy, and where the selectors name a combination the study did not
    train at the chosen T (a remedy trained only at the longest T, say), the lengths it was trained at."""
    name = f"ex_cell_{side} + ' · ' + ex_strategy_{side}"
    key = f"ex_task + '|' + ex_cell_{side} + '|' + ex_strategy_{side}"
    lengths = f"ex_lengths[{key}]"
    trained = f"isValid({lengths}) && indexof({lengths}, toNumber(ex_T)) >= 0"
    untrained = f"{json.dumps(msg('explorer.untrained'))} + ' ' + (isValid({lengths}) ? join({lengths}, ', ') : '−')"
    return {"expr": f"{trained} ? {name} : {name} + ' — ' + {untrained}"}


def _column(side: str, seeds: Sequence[int]) -> dict[str, Any]:
    flow = _flow_chart(side, seeds)
    flow["layer"][1] = _with_current_probe(flow["layer"][1])
    title = _column_title(side)
    charts = [flow, _train_chart(side, "loss", seeds), _train_chart(side, "grad", seeds), _eval_chart(side, seeds)]
    return {"title": {"text": title, "anchor": "middle", "fontSize": 14}, "vconcat": charts, "spacing": 24}


def _select(name: str, label_key: str, options: Sequence[Any], value: Any) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "bind": {"input": "select", "options": list(options), "name": msg(label_key) + " "},
    }


def explorer_spec(results: Results, data: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The explorer's Vega-Lite spec: the selectors as bound parameters, two columns of four charts."""
    cells, strategies = list(results.cells), list(results.strategies)
    tasks = list(results.tasks)
    lengths = sorted({run["T"] for run in data["runs"]})
    seeds = sorted({run["seed"] for run in data["runs"]})
    first = results.in_order(results.accuracy).iloc[0]
    task = str(first["task"])
    seq_len = int(results.longest.get(task, int(first["seq_len"])))
    control = results.control or strategies[0]
    cell_a = (results.vanilla_cells or cells)[0]
    others = [c for c in results.gated_cells if c != cell_a] or [c for c in cells if c != cell_a]
    other_strategy = next((s for s in strategies if s != control), control)
    cell_b, strategy_b = (others[0], control) if others else (cell_a, other_strategy)
    probes = max((run["n"] for run in data["runs"]), default=0)
    params = [
        _select("ex_task", "explorer.control.task", tasks, task),
        _select("ex_T", "explorer.control.seq_len", lengths, seq_len),
        _select("ex_cell_a", "explorer.control.cell_a", cells, cell_a),
        _select("ex_strategy_a", "explorer.control.strategy_a", strategies, control),
        _select("ex_cell_b", "explorer.control.cell_b", cells, cell_b),
        _select("ex_strategy_b", "explorer.control.strategy_b", strategies, strategy_b),
        {"name": "ex_lengths", "value": trained_lengths(data["runs"])},
        {
            "name": "ex_probe",
            "value": probes,
            "bind": {
                "input": "range",
                "min": 0,
                "max": max(probes, 1),
                "step": 1,
                "name": msg("explorer.control.probe") + " ",
            },
        },
    ]
    return {
        "$schema": SCHEMA,
        "params": params,
        "datasets": data,
        "hconcat": [_column(side, seeds) for side in SIDES],
        "spacing": 30,
        "config": {
            "view": {"stroke": "#dddddd"},
            "title": {"fontSize": 12, "fontWeight": "normal"},
            "axis": {"labelFontSize": 10},
        },
    }


def number_locale() -> dict[str, Any]:
    """The d3 number-format locale of the page's language: its decimal separator from the catalogue, no thousands
    separator (as the rest of the report writes numbers) and a typographic minus."""
    return {
        "decimal": msg("number.decimal"),
        "thousands": "",
        "grouping": [3],
        "currency": ["", ""],
        "minus": "−",
    }


@cache
def javascript_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed in one script (from vl-convert-python; no request to any host)."""
    import vl_convert

    return vl_convert.javascript_bundle()


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` can close it or start a tag."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def explorer_html(results: Results, tables_dir: str | Path) -> str:
    """The explorer as one HTML fragment: the chart's element, its spec and data, the JavaScript (inlined)."""
    spec = explorer_spec(results, explorer_data(results, read_evaluations(tables_dir)))
    options = {
        "renderer": "svg",
        "bind": f"#{ELEMENT_ID}-controls",
        "logLevel": 1,  # errors only: an empty combination's charts warn of an empty extent
        "actions": {"export": True, "source": False, "compiled": False, "editor": False},
        "formatLocale": number_locale(),
        "i18n": {"PNG_ACTION": msg("explorer.export.png"), "SVG_ACTION": msg("explorer.export.svg")},
    }
    return (
        f'<div id="{ELEMENT_ID}-controls" class="rnn-explorer-controls"></div>\n'
        f'<div class="rnn-explorer-frame"><div id="{ELEMENT_ID}" class="rnn-explorer"></div></div>\n'
        f"<noscript><p>{msg('explorer.noscript')}</p></noscript>\n"
        f'<script type="application/json" id="{ELEMENT_ID}-spec">{_script_json(spec)}</script>\n'
        f'<script type="application/json" id="{ELEMENT_ID}-options">{_script_json(options)}</script>\n'
        f"<script>{javascript_bundle()}</script>\n"
        "<script>(function () {\n"
        f"  var read = function (id) {{ return JSON.parse(document.getElementById(id).textContent); }};\n"
        f'  vegaEmbed("#{ELEMENT_ID}", read("{ELEMENT_ID}-spec"), read("{ELEMENT_ID}-options"))'
        ".catch(function (err) { console.error(err); });\n"
        "})();</script>\n"
        "<style>.rnn-explorer-frame { overflow-x: auto; } "
        ".rnn-explorer-controls, .rnn-explorer-controls .vega-bindings { display: flex; flex-wrap: wrap; "
        "gap: 0.3em 1.2em; margin: 0.5em 0 0.8em; font-size: 0.9em; } "
        ".rnn-explorer-controls .vega-bind { white-space: nowrap; }</style>\n"
    )


def raw_html_block(html: str) -> str:
    """``html`` as a Markdown raw HTML block, fenced by more backticks than it holds in a row."""
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", html)), default=0) + 1)
    return f"{fence}{{=html}}\n{html.rstrip()}\n{fence}"


def show_explorer(results: Results, tables_dir: str | Path) -> None:
    """Put the explorer on the page (a cell of ``report/report.qmd``).

    It is displayed as Markdown holding a raw HTML block, not as an HTML output: both engines pass such a block
    through untouched, whereas Quarto answers an HTML output with a script by adding require.js and jQuery from
    a CDN (a request to another host, and a page that fails offline).
    """
    display(Markdown(raw_html_block(explorer_html(results, tables_dir))))
