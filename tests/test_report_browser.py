"""The tiny study's report pages in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) opens each page from disk, and the explorer must draw its charts with
marks, redraw them when the reader picks another combination or probe, log no error and load nothing from any
other place than the page itself.

Skipped, with the reason, where no browser is installed; under CI=true (``.ci/run`` installs Chromium) a missing
browser fails instead. The study runs through the real pipeline (its default target: runs, tables, both pages and
the figure files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from workflow_runner import TINY, new_study, run_snakemake

from rnn_gradients.report.figure_files import FIGURES_DIR

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
LOCAL = ("file:", "data:", "blob:", "about:")
WORDS = {"en": ("training loss", "left: cell"), "es": ("pérdida de entrenamiento", "izquierda: celda")}
PAGES = {"en": "report.html", "es": "report.es.html"}
# the figures the tiny study can draw (no normalization strategy, one vanilla cell: the report leaves those out)
TINY_FIGURES = ("fig-derivatives", "fig-flow", "fig-traces", "fig-clipping", "fig-gates", "fig-solved", "fig-theory")


def browser_missing() -> str | None:
    """Why no headless browser can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None:
        return "no Chromium on PATH (apt-get install chromium chromium-driver)"
    if DRIVER is None:
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def study(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study run to the end: its working directory."""
    workdir = new_study(tmp_path_factory.mktemp("tiny-browser"), TINY)
    done = run_snakemake(workdir, timeout=1500)
    assert done.returncode == 0, done.stdout[-5000:]
    return workdir


def open_page(driver: Any, page: Path) -> None:
    driver.get_log("browser"), driver.get_log("performance")  # forget what earlier pages logged
    driver.get(page.as_uri())
    wait_for(lambda: len(line_paths(driver)) >= 8, what=f"the explorer's lines on {page.name}")


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def line_paths(driver: Any) -> list[str]:
    """The path data of every drawn line and point of the explorer, in document order."""
    script = (
        "return Array.from(document.querySelectorAll('#rnn-explorer svg .mark-line path, "
        "#rnn-explorer svg .mark-symbol path')).map(p => p.getAttribute('d') || '').filter(d => d.length > 0);"
    )
    return driver.execute_script(script)


def texts(driver: Any) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#rnn-explorer svg text')).map(t => t.textContent);"
    )


def choose(driver: Any, param: str, value: str) -> None:
    """Pick ``value`` in the explorer's selector of ``param``, as a reader does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.CSS_SELECTOR, f'.rnn-explorer-controls select[name="{param}"]')).select_by_value(
        value
    )


def slide(driver: Any, param: str, value: int) -> None:
    driver.execute_script(
        "const input = document.querySelector(`.rnn-explorer-controls input[name='${arguments[0]}']`);"
        "input.value = arguments[1]; input.dispatchEvent(new Event('input', {bubbles: true}));",
        param,
        value,
    )


def requests_made(driver: Any) -> list[str]:
    """Every URL the page requested (Chromium's DevTools network log) and every resource it loaded."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    urls += driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    return urls


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_explorer_draws_in_the_pages_language_offline_and_without_errors(
    browser: Any, study: Path, lang: str
) -> None:
    page = study / "results" / "report" / PAGES[lang]
    open_page(browser, page)
    lines = line_paths(browser)
    assert len(lines) >= 8 and all(d.startswith("M") for d in lines)
    title, control = WORDS[lang]
    assert texts(browser).count(title) == 2  # the loss chart of each side
    assert control in browser.find_element("css selector", ".rnn-explorer-controls").text
    axis = [t for t in texts(browser) if re.fullmatch(r"0[.,]\d+", t)]
    assert axis and all(("," in t) == (lang == "es") for t in axis)  # the page's decimal separator
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    leaving = [url for url in requests_made(browser) if not url.startswith(LOCAL)]
    assert leaving == []
    html = page.read_text(encoding="utf-8")
    assert html.count("window.vegaEmbed=") == 1  # the JavaScript once per page
    assert html.count('src="data:image/png;base64,') >= len(TINY_FIGURES)  # the static figures stay for no-JS readers


def test_choosing_another_combination_or_probe_redraws_the_charts(browser: Any, study: Path) -> None:
    open_page(browser, study / "results" / "report" / "report.html")
    before = line_paths(browser)
    assert "rnn_tanh · none" in texts(browser) and "lstm · none" in texts(browser)

    choose(browser, "ex_strategy_a", "clip_norm")
    wait_for(lambda: "rnn_tanh · clip_norm" in texts(browser), what="the left column's new title")
    after_strategy = line_paths(browser)
    assert after_strategy != before

    choose(browser, "ex_task", "temporal_order")
    wait_for(lambda: line_paths(browser) != after_strategy, what="the charts of another task")
    choose(browser, "ex_task", "adding")
    choose(browser, "ex_T", "6")
    wait_for(lambda: len(line_paths(browser)) >= 8, what="adding at T = 6")
    at_six = line_paths(browser)
    assert at_six != after_strategy

    slide(browser, "ex_probe", 0)  # the gradient flow at initialization instead of after training
    wait_for(lambda: line_paths(browser) != at_six, what="the flow at another probe")
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_the_pipeline_writes_every_figure_to_take_away(study: Path) -> None:
    folder = study / FIGURES_DIR
    names = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))  # Snakemake's stamp
    expected = sorted(
        f"{label}{lang}.{fmt}" for label in TINY_FIGURES for lang in ("", ".es") for fmt in ("svg", "pdf")
    )
    assert names == expected
    assert "results/figures/" in (study / "results" / "report" / "report.html").read_text(encoding="utf-8")
