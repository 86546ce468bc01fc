"""The report's explorer without a browser: its data (downsampled, every run), its Vega-Lite spec (compiled and
drawn by vl-convert, Vega's own renderer), its HTML (JavaScript once, nothing that leaves the page or closes a
script early) and the page size it costs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import vl_convert
from fixtures_tables import make_study_tables, write_study_tables

from rnn_gradients.report import explorer
from rnn_gradients.report.i18n import language, msg
from rnn_gradients.report.render import _EXTERNAL
from rnn_gradients.report.results import Results
from rnn_gradients.study.grid import RUN_KEYS

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "report" / "report.qmd"
BUDGET = 3_000_000
"""The most the explorer may add to the default study's page, in bytes (issue 18)."""


def evaluations_of(tables: dict, every: int = 20) -> pd.DataFrame:
    """A validation curve for every run of the fixture tables: falling error, one evaluation every ``every`` steps."""
    rows = []
    for run in tables["accuracy"].itertuples(index=False):
        last = int(tables["gradient_norms"].query("cell == @run.cell")["step"].max())
        for step in range(0, last + 1, every):
            error = 0.5 * np.exp(-step / 50) + 0.01
            rows.append((run.task, run.seq_len, run.cell, run.strategy, run.seed, step, error, 0.0, error, False))
    columns = [*RUN_KEYS, "step", "val_loss", "val_metric", "val_error", "solved"]
    return pd.DataFrame(rows, columns=columns)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = write_study_tables(tmp_path_factory.mktemp("tables"), steps=400, probe_every=100)
    frames = make_study_tables(steps=400, probe_every=100)
    evaluations_of(frames).to_csv(out / "evaluations.csv", index=False)
    return out


def test_the_data_hold_every_run_downsampled(tables: Path) -> None:
    results = Results.load(tables)
    data = explorer.explorer_data(results, explorer.read_evaluations(tables))
    assert len(data["runs"]) == len(results.accuracy)
    ids = {run["r"] for run in data["runs"]}
    for name in ("flow", "train", "evals"):
        assert {row["r"] for row in data[name]} == ids, name  # every run has every curve
    for row in data["train"]:
        assert 2 <= len(row["s"]) <= explorer.MAX_STEPS + 1 and row["s"] == sorted(set(row["s"]))
        assert row["s"][0] == 1 and row["s"][-1] in (400, 37)  # the first and last step stay
        assert len(row["l"]) == len(row["g"]) == len(row["s"])
        assert all(v is None or v > 0 for v in [*row["l"], *row["g"]])  # log scale: positive values only
    for run in data["runs"]:
        assert len(run["k"]) == min(run["T"], explorer.MAX_DISTANCES) and run["k"][0] == 0
        assert run["k"][-1] == run["T"] - 1  # the first input's distance, the farthest, stays
    for row in data["flow"]:
        assert len(row["g"]) == len(data["runs"][row["r"]]["k"])
    for row in data["evals"]:
        assert row["s"][0] == 0 and row["s"][-1] == 400  # the first and last evaluation stay
    # one probe per probe step of the run, numbered from 0; n is the run's last probe
    first = [row for row in data["flow"] if row["r"] == 0]
    assert [(row["p"], row["i"]) for row in first] == [(0, 0), (100, 1), (200, 2), (300, 3), (400, 4)]
    assert data["runs"][0]["n"] == 4


def test_the_diverged_run_is_marked_and_says_so(tables: Path) -> None:
    results = Results.load(tables)
    with language("es"):
        data = explorer.explorer_data(results, None)
    diverged = [run for run in data["runs"] if run["div"] is not None]
    assert [(run["task"], run["T"], run["cell"], run["strategy"], run["seed"]) for run in diverged] == [
        ("adding", 40, "rnn_relu", "baseline", 1)
    ]
    assert diverged[0]["verdict"] == "divergió en el paso 37"
    (train,) = [row for row in data["train"] if row["r"] == diverged[0]["r"]]
    after = [g for s, g in zip(train["s"], train["g"], strict=True) if s >= 37]
    assert after and all(g is None for g in after)  # the non-finite norms are left out, not drawn as 0
    assert all(g is not None for s, g in zip(train["s"], train["g"], strict=True) if s < 37)
    clipped = {run["strategy"]: run["clip"] for run in data["runs"]}
    assert clipped == {"baseline": None, "clip": 1.0, "layer_norm": None}


def test_log_spaced_and_even_spaced_indices() -> None:
    assert list(explorer.log_spaced(5, 10)) == [0, 1, 2, 3, 4]
    picked = explorer.log_spaced(2500, 120)
    assert len(picked) <= 121 and picked[0] == 0 and picked[-1] == 2499 and len(set(picked)) == len(picked)
    assert (np.diff(picked) >= 1).all() and np.diff(picked)[-1] > np.diff(picked)[0]  # dense early, sparse late
    even = explorer.even_spaced(66, 40)
    assert len(even) == 40 and even[0] == 0 and even[-1] == 65 and list(explorer.even_spaced(7, 40)) == list(range(7))


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_spec_compiles_and_draws_every_chart_with_marks(tables: Path, lang: str) -> None:
    results = Results.load(tables)
    with language(lang):
        spec = explorer.explorer_spec(results, explorer.explorer_data(results, explorer.read_evaluations(tables)))
        svg = vl_convert.vegalite_to_svg(spec, format_locale=explorer.number_locale())
    vega = json.loads(json.dumps(vl_convert.vegalite_to_vega(spec)))
    assert {signal["name"] for signal in vega["signals"]} >= {"ex_task", "ex_T", "ex_cell_a", "ex_probe"}
    # 2 sides × 4 charts; every line mark drawn (a path with points), the titles in the page's language
    assert svg.count('class="mark-line') >= 2 * 4
    paths = re.findall(r'<path[^>]*d="M[^"]{20,}"', svg)
    assert len(paths) > 20
    title = "training loss" if lang == "en" else "pérdida de entrenamiento"
    assert svg.count(f">{title}</text>") == 2
    if lang == "es":
        assert "0,0" in svg and "0.0" not in re.sub(r"<path[^>]*>|transform=\"[^\"]*\"|[a-z-]+=\"[^\"]*\"", "", svg)


def test_the_html_inlines_the_javascript_once_and_nothing_escapes_its_script(tmp_path: Path) -> None:
    strategies = {"baseline": {}, "</script><img src=//example.com/x.png>": {"clip_norm": 1.0}}
    tables = write_study_tables(tmp_path / "tables", strategies=strategies, cells=("rnn_tanh", "lstm"))
    with language("en"):
        html = explorer.explorer_html(Results.load(tables), tables)
    bundle = explorer.javascript_bundle()
    assert html.count(bundle) == 1 and len(bundle) > 500_000
    assert html.lower().count("</script>") == 4  # the spec, the options, the bundle and the call: no other closes
    assert not _EXTERNAL.search(html)
    spec = re.search(r'<script type="application/json" id="rnn-explorer-spec">(.*?)</script>', html, re.S)
    assert spec and "\\u003c/script\\u003e" in spec.group(1)
    assert json.loads(spec.group(1))["params"][3]["bind"]["options"][1].startswith("</script>")
    assert '"editor":false' in html  # the embed's link to the online editor (another host) is off


def test_the_report_states_the_downsampling_it_does() -> None:
    qmd = REPORT.read_text(encoding="utf-8")
    assert f"at most {explorer.MAX_STEPS} log-spaced steps per curve and {explorer.MAX_DISTANCES} distances" in qmd
    assert f"como mucho {explorer.MAX_STEPS} pasos" in qmd and f"{explorer.MAX_DISTANCES} distancias por sonda" in qmd
    assert "show_explorer(results, tables)" in qmd


def test_the_default_studys_explorer_fits_the_page_budget(tmp_path: Path) -> None:
    """The data for 72 runs of the default study's length (2,500 steps, a probe every 500, T up to 65), scaled to its
    480 runs, plus the JavaScript once, stay within 3 MB."""
    tasks = {
        "adding": {"seq_lens": [10, 60], "metric": "mse", "chance": 1.0 / 6.0, "extra": 0},
        "temporal_order": {"seq_lens": [20, 65], "metric": "accuracy", "chance": 0.25, "extra": 0},
    }
    strategies = {"none": {}, "clip_norm": {"clip_norm": 1.0}}
    out = write_study_tables(
        tmp_path / "tables", tasks=tasks, strategies=strategies, seeds=(0, 1, 2), steps=2500, probe_every=500
    )
    frames = make_study_tables(tasks=tasks, strategies=strategies, seeds=(0, 1, 2), steps=2500, probe_every=500)
    evaluations_of(frames, every=100).to_csv(out / "evaluations.csv", index=False)
    results = Results.load(out)
    with language("en"):
        html = explorer.explorer_html(results, out)
    runs = len(results.accuracy)
    per_run = (len(html.encode()) - len(explorer.javascript_bundle().encode())) / runs
    default_study = 4 * 5 * 8 * 3  # task × T, cells, strategies, seeds of config/config.yaml
    assert runs == 72 and len(explorer.javascript_bundle().encode()) + per_run * default_study <= BUDGET


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_combination_the_study_did_not_train_at_the_chosen_T_says_where_it_did(tables: Path, lang: str) -> None:
    results = Results.load(tables)
    data = explorer.explorer_data(results, explorer.read_evaluations(tables))
    short, long = sorted({run["T"] for run in data["runs"] if run["task"] == "adding"})
    # the remedy trained only at the longest T, as the default study trains its remedies
    data["runs"] = [run for run in data["runs"] if not (run["strategy"] == "clip" and run["T"] == short)]
    with language(lang):
        spec = explorer.explorer_spec(results, data)
        values = {"ex_task": "adding", "ex_T": short, "ex_cell_a": "rnn_tanh", "ex_strategy_a": "clip"}
        for param in spec["params"]:
            param["value"] = values.get(param["name"], param["value"])
        svg = vl_convert.vegalite_to_svg(spec, format_locale=explorer.number_locale())
        said = msg("explorer.untrained")
    titles = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert f"rnn_tanh · clip — {said} {long}" in titles
    assert "lstm · baseline" in titles  # the other column, trained at this T, has its plain title
    assert sum(said in title for title in titles) == 1
