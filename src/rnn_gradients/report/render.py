"""Rendering the Quarto report to one self-contained HTML file, with Quarto or without it.

Both engines pass the report its parameters the Quarto way: the report's first cell, tagged ``parameters``,
holds defaults, and a cell assigning the actual values (:func:`report_parameters`: the absolute path of the
study tables, the name of the engine, the language and the file names of the report in every language rendered)
is injected right after it.

One source, one page per language: the page's language is the document's ``lang`` metadata (set on the command
line, over the front matter's) and, for the sentences the cells write, the ``lang`` parameter; the filters the
front matter lists (``report/languages.lua``) keep the prose of that language. Both engines run them.

Engine ``quarto``: ``quarto render -P tables:… -P renderer:quarto`` of a private copy of the report folder (so
concurrent renders never share Quarto's intermediate files), the cells executed in the report folder, the page
then moved to the requested path. Quarto injects the parameters with papermill.

Engine ``offline``, for machines without Quarto: jupytext reads the ``.qmd`` as R Markdown (each
```` ```{python} ```` chunk becomes a code cell), the parameters cell is injected as Quarto does, nbclient
executes the cells in this environment's ``python3`` kernel, and the outputs become pandoc Markdown (``#|`` cell
options honored: figures, tables, hidden cells). Pandoc writes the page: its Lua filter ``crossref.lua`` numbers
figures, tables and sections and resolves ``@fig-…``/``@tbl-…``/``@sec-…`` in the document's language,
``page.css`` lays the page out, every resource is embedded and math is MathML. The Lua filters listed in the front
matter run first, in their order. Cell options and filters the offline engine does not implement stop the render
instead of being ignored.

With either engine a cell that raises stops the render with the cell's error and no page is written; the output
file only ever appears complete (written beside it, then renamed).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml

from rnn_gradients.files import atomic_write_text
from rnn_gradients.report.i18n import PRIMARY, check_language, page_name, primary_page_name

ENGINES = ("auto", "quarto", "offline")
Engine = Literal["auto", "quarto", "offline"]
CROSSREF_FILTER = Path(__file__).with_name("crossref.lua")
PAGE_CSS = Path(__file__).with_name("page.css")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I
)
# The cell options the offline engine implements (with their defaults); any other one is refused.
_CELL_DEFAULTS = {"echo": True, "output": True, "warning": True, "include": True}
_CELL_OPTIONS = {*_CELL_DEFAULTS, "label", "fig-cap", "tbl-cap", "tags"}
_INJECTED = "injected-parameters"  # the tag of the cell that sets the parameters (papermill's name)


class RenderError(RuntimeError):
    """The report could not be rendered: a cell raised, a reference is unknown, or a tool failed."""


def report_parameters(tables_dir: Path, renderer: str, lang: str, pages: dict[str, str]) -> dict[str, Any]:
    """The values of the report's ``parameters`` cell: where the study tables are, which engine renders, the
    language it is written in, and the report's page in every language rendered (file names in one folder)."""
    return {"tables": str(tables_dir), "renderer": renderer, "lang": lang, "pages": pages}


def language_pages(out_html: Path, lang: str, languages: Sequence[str]) -> dict[str, str]:
    """language -> file name of the report's page in that language, for ``lang`` (written to ``out_html``) and
    ``languages``, the others rendered into the same folder (:func:`~rnn_gradients.report.i18n.page_name`)."""
    others = [code for code in dict.fromkeys(languages) if code != lang]
    if not others:
        return {lang: out_html.name}
    primary = primary_page_name(out_html.name, lang)
    return {code: page_name(primary, code) for code in [lang, *others]}


def quarto_missing() -> str | None:
    """Why ``quarto`` cannot render the report in this environment, or None when it can."""
    if shutil.which("quarto") is None:
        return "quarto is not on PATH"
    if importlib.util.find_spec("papermill") is None:
        return (
            "papermill is not installed, and Quarto's Jupyter engine needs it to set the report's parameters "
            "(pip install papermill, or the project's 'quarto' extra)"
        )
    return None


def render_report(
    qmd: Path,
    out_html: Path,
    tables_dir: Path,
    engine: Engine = "auto",
    *,
    lang: str | None = None,
    languages: Sequence[str] = (),
    timeout: int = 900,
) -> str:
    """Render ``qmd`` to the single HTML file ``out_html`` from the study tables in ``tables_dir``.

    ``engine``: "quarto", "offline", or "auto" (quarto when :func:`quarto_missing` finds nothing missing, with a
    warning when quarto is on PATH but cannot run). ``lang``: the page's language (one with a message catalogue),
    by default the ``lang`` of the document's front matter. ``languages``: the other languages whose pages are rendered
    into the same folder, named by :func:`~rnn_gradients.report.i18n.page_name` (the page links to them).
    ``timeout`` bounds one cell's execution (offline) or the whole Quarto run, in seconds. Returns the engine used.
    """
    qmd, out_html, tables_dir = Path(qmd).resolve(), Path(out_html).resolve(), Path(tables_dir).resolve()
    if engine not in ENGINES:
        raise ValueError(f"unknown render engine {engine!r}; choose one of {', '.join(ENGINES)}")
    for code in (*([lang] if lang else []), *languages):
        check_language(code)
    if not qmd.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such report source (report/report.qmd of the checkout)", str(qmd))
    if lang is None:
        lang = str(split_front_matter(qmd.read_text(encoding="utf-8"))[0].get("lang") or PRIMARY)
    pages = language_pages(out_html, lang, languages)
    if not tables_dir.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, "no such directory of study tables (what `collect` writes: results/tables)", str(tables_dir)
        )
    if engine == "auto":
        missing = quarto_missing()
        engine = "quarto" if missing is None else "offline"
        if missing is not None and shutil.which("quarto"):
            warnings.warn(f"rendering offline: {missing}", stacklevel=2)
    parameters = report_parameters(tables_dir, engine, lang, pages)
    if engine == "quarto":
        render_quarto(qmd, out_html, parameters, timeout=timeout)
    else:
        render_offline(qmd, out_html, parameters, timeout=timeout)
    return engine


def _kernel_environment() -> dict[str, str]:
    return {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def render_quarto(qmd: Path, out_html: Path, parameters: dict[str, Any], *, timeout: int = 900) -> None:
    """``quarto render`` of a temporary copy of the report folder, the cells run in the report folder itself.

    Parameter values (:func:`report_parameters`) are given to ``-P`` as JSON (valid YAML, which Quarto parses), so
    any path arrives verbatim; the language is also the document's ``lang`` (``-M``). Quarto's ``--output`` takes
    a file name only, so the page is written inside the copy and then moved into place; ``QUARTO_PYTHON`` pins the
    Python (and so the Jupyter kernel) of this process.
    """
    missing = quarto_missing()
    if missing is not None:
        raise FileNotFoundError(f"{missing}; render with engine 'offline'")
    with tempfile.TemporaryDirectory(prefix="rnn-gradients-quarto-") as tmp:
        work = Path(tmp) / "report"
        shutil.copytree(qmd.parent, work, ignore=shutil.ignore_patterns(".*", "*.html", "*_files", "__pycache__"))
        command = [
            "quarto", "render", qmd.name, "--to", "html", "--output", out_html.name,
            "--execute-dir", str(qmd.parent), "-M", f"lang:{parameters['lang']}",
        ]  # fmt: skip
        for name, value in parameters.items():
            command += ["-P", f"{name}:{json.dumps(value)}"]
        env = {**_kernel_environment(), "QUARTO_PYTHON": sys.executable}
        try:
            done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise RenderError(f"quarto render of {qmd} took longer than {timeout} s") from err
        if done.returncode != 0:
            raise RenderError(
                f"quarto render of {qmd} failed ({done.returncode}):\n{_ANSI.sub('', done.stderr)[-6000:]}"
            )
        page = (work / out_html.name).read_text(encoding="utf-8")
    atomic_write_text(out_html, page)


def split_front_matter(text: str) -> tuple[dict[str, Any], str, str]:
    """The YAML front matter (``---`` fenced, at the very top) as a dict and as text, and the rest."""
    text = text.replace("\r\n", "\n")
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, "", text
    front = yaml.safe_load(match.group(1) or "") or {}
    if not isinstance(front, dict):
        raise ValueError("the front matter must be a YAML mapping")
    return front, match.group(0), text[match.end() :]


def html_options(front: dict[str, Any]) -> dict[str, Any]:
    """Quarto's HTML options: the top level of the front matter, overridden by ``format: html:``."""
    formats = front.get("format")
    html = formats.get("html") if isinstance(formats, dict) else None
    return {**front, **(html if isinstance(html, dict) else {})}


def cell_options(source: str) -> tuple[dict[str, Any], str]:
    """Quarto's ``#| key: value`` lines at the top of a code cell (YAML), and the code without them."""
    lines = source.split("\n")
    count = 0
    while count < len(lines) and lines[count].startswith("#|"):
        count += 1
    yaml_text = "\n".join(line[3:] if line.startswith("#| ") else line[2:] for line in lines[:count])
    try:
        options = (yaml.safe_load(yaml_text) or {}) if count else {}
    except yaml.YAMLError as err:
        raise ValueError(f"invalid '#|' cell options:\n{yaml_text}\n{err}") from err
    if not isinstance(options, dict):
        raise ValueError(f"'#|' cell options must be 'key: value' lines, got:\n{yaml_text}")
    return options, "\n".join(lines[count:]).strip("\n")


def _checked(options: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(options) - _CELL_OPTIONS)
    if unknown:
        raise ValueError(
            f"{where}: the offline renderer does not implement the cell option(s) {', '.join(unknown)} "
            f"(it implements {', '.join(sorted(_CELL_OPTIONS))}); render with Quarto, or drop them"
        )
    return options


def front_matter_filters(front: dict[str, Any], folder: Path) -> list[Path]:
    """The Lua filters the front matter lists (``filters:``, a path or ``{path: …, at: …}`` each), in order, as
    paths resolved against the document's ``folder``. ValueError for a filter the offline engine cannot run."""
    entries = front.get("filters") or []
    filters = []
    for entry in entries if isinstance(entries, list) else [entries]:
        name = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name.endswith(".lua"):
            raise ValueError(
                f"filter {entry!r}: the offline renderer runs Lua filters given by path (a .lua file, or "
                "{path: file.lua, at: …}) only; render with Quarto, or drop it"
            )
        path = (folder / name).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"filter named in the front matter not found: {path}")
        filters.append(path)
    return filters


def render_offline(qmd: Path, out_html: Path, parameters: dict[str, Any], *, timeout: int = 900) -> None:
    """Execute the report's cells with nbclient and write the page with pandoc (module docstring)."""
    import jupytext
    import nbformat

    front, front_text, body = split_front_matter(qmd.read_text(encoding="utf-8"))
    page = {**html_options(front), "lang": parameters["lang"]}
    filters = front_matter_filters(front, qmd.parent)
    math = page.get("html-math-method", "mathml")
    math = math.get("method") if isinstance(math, dict) else math
    if math != "mathml":
        raise ValueError(
            f"html-math-method {math!r}: the offline renderer writes self-contained pages with 'mathml' only "
            "(other methods load a script from the network)"
        )
    css = page.get("css") or []
    sheets = [(qmd.parent / name).resolve() for name in ([css] if isinstance(css, str) else css)]
    missing = [str(sheet) for sheet in sheets if not sheet.is_file()]
    if missing:
        raise FileNotFoundError(f"stylesheet named in the front matter not found: {', '.join(missing)}")
    execute = front.get("execute") if isinstance(front.get("execute"), dict) else {}
    defaults = {**_CELL_DEFAULTS, **_checked(execute, f"{qmd.name}: execute")}

    notebook = jupytext.reads(body, fmt="Rmd")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    options = []
    for cell in notebook.cells:
        merged: dict[str, Any] = {}
        if cell.cell_type == "code":
            try:
                own, _ = cell_options(cell.source)
            except ValueError as err:
                raise ValueError(f"{qmd}: {err}") from err
            merged = {**defaults, **_checked(own, f"{qmd.name}: cell {own.get('label', '')}".rstrip())}
        options.append(merged)
    for index, opts in enumerate(options):
        if "parameters" in (opts.get("tags") or []):  # Quarto and papermill: inject right after the first one
            code = "# Injected Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
            notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(code, metadata={"tags": [_INJECTED]}))
            options.insert(index + 1, {**opts, "tags": [_INJECTED], "label": None})
            break

    with tempfile.TemporaryDirectory(prefix="rnn-gradients-render-") as tmp:
        work = Path(tmp)
        _execute(notebook, qmd, timeout, work / "kernel.log")
        blocks = [front_text]
        for index, (cell, opts) in enumerate(zip(notebook.cells, options, strict=True)):
            if cell.cell_type != "code":
                blocks.append(cell.source)
            elif opts["include"]:
                blocks.extend(_code_cell_blocks(cell, opts, work / f"cell{index}"))
        markdown = "\n\n".join(block for block in blocks if block.strip()) + "\n"
        html = _pandoc(markdown, page, [PAGE_CSS, *sheets], [*filters, CROSSREF_FILTER])
    external = _EXTERNAL.search(html)
    if external:
        raise RenderError(f"the page would load an external resource: {external.group(0)[:200]}")
    atomic_write_text(out_html, html)


def _execute(notebook: Any, qmd: Path, timeout: int, kernel_log: Path) -> None:
    """Run every code cell in a fresh ``python3`` kernel started in the report's folder.

    The kernel's own stderr (start-up chatter) goes to ``kernel_log``, quoted only if the kernel dies.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, CellTimeoutError, DeadKernelError

    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(qmd.parent)}}
    )
    with kernel_log.open("w", encoding="utf-8") as log, _noting_interrupts() as interrupts:
        try:
            client.execute(env=_kernel_environment(), stderr=log)
        except asyncio.CancelledError:  # Ctrl-C while nbclient waits on the kernel cancels its event loop's task
            raise KeyboardInterrupt from None
        except (CellControlSignal, CellTimeoutError, DeadKernelError, RuntimeError) as err:
            # Ctrl-C reached the kernel inside a cell (its KeyboardInterrupt), or this process while the kernel
            # started: the kernel, in the same process group, died of it, and jupyter_client reports that death
            # ("Kernel died before replying to kernel_info") rather than the interrupt.
            if interrupts.seen or getattr(err, "ename", None) == "KeyboardInterrupt":
                raise KeyboardInterrupt from None
            failure = _failed_cell(notebook, err)
            if isinstance(err, (DeadKernelError, RuntimeError)):
                failure += "\n\nkernel log:\n" + kernel_log.read_text(encoding="utf-8")[-4000:]
            raise RenderError(f"{qmd.name}: {failure}") from err


class _Interrupts:
    seen = False


@contextmanager
def _noting_interrupts() -> Iterator[_Interrupts]:
    """Note a Ctrl-C (SIGINT) that arrives inside the block, then raise it as Python's own handler does.

    nbclient runs the kernel's start-up in an event loop, and a KeyboardInterrupt raised there can end up inside
    the loop's machinery instead of reaching the caller; ``seen`` says it came all the same. A SIGINT that this
    process ignores (or handles some other way) is left alone, and so is a render on a thread other than the main
    one: Python runs signal handlers only on the main thread and lets only that thread install them.
    """
    interrupts = _Interrupts()
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler or threading.current_thread() is not threading.main_thread():
        yield interrupts
        return

    def note(signum: int, frame: Any) -> None:
        interrupts.seen = True
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield interrupts
    finally:
        signal.signal(signal.SIGINT, previous)


def _failed_cell(notebook: Any, err: Exception) -> str:
    """Which cell failed and its error, traceback in plain text."""
    cells = [c for c in notebook.cells if c.cell_type == "code" and _INJECTED not in c.metadata.get("tags", [])]
    for number, cell in enumerate(cells, start=1):  # numbered as in the source
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                options, code = cell_options(cell.source)
                where = options.get("label") or (code.splitlines() or [""])[0][:60]
                trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
                return f"code cell {number} ({where}) raised {output['ename']}: {output['evalue']}\n\n{trace}"
    return f"{type(err).__name__}: {_ANSI.sub('', str(err))}"


def _code_cell_blocks(cell: Any, opts: dict[str, Any], stem: Path) -> list[str]:
    """Pandoc Markdown of one executed cell: its code (``echo``), its outputs, wrapped as a figure or a table
    when labelled ``fig-…``/``tbl-…`` (crossref.lua numbers them)."""
    _, code = cell_options(cell.source)
    blocks = [f"```python\n{code}\n```"] if opts["echo"] and code.strip() else []
    if not opts["output"]:
        return blocks
    label = str(opts.get("label") or "")
    images: list[tuple[Path, int | None]] = []
    content: list[str] = []
    for number, output in enumerate(cell.get("outputs", [])):
        kind = output.get("output_type")
        data = output.get("data", {})
        if kind == "stream" and (output.get("name") == "stdout" or opts["warning"]):
            content.append(_text_block(output.get("text", "")))
        elif "image/png" in data:
            path = stem.with_name(f"{stem.name}-{number}.png")
            path.write_bytes(base64.b64decode(data["image/png"]))
            width = (output.get("metadata", {}).get("image/png") or {}).get("width")
            images.append((path, int(width) if width else None))
        elif "text/markdown" in data:
            content.append(data["text/markdown"])
        elif "text/plain" in data:
            content.append(_text_block(data["text/plain"]))
    if label.startswith("fig-") and images:
        if len(images) > 1:
            raise RenderError(f"{label}: the offline renderer draws one image per figure, the cell shows {len(images)}")
        caption = " ".join(str(opts.get("fig-cap") or "").split())
        return [*blocks, *content, _image(*images[0], caption=caption, label=label)]
    content[:0] = [_image(*image) for image in images]
    if label.startswith("tbl-") and content:
        caption = " ".join(str(opts.get("tbl-cap") or "").split())
        body = "\n\n".join(content)
        content = [
            f"::: {{#{label} .table-float}}\n::: table-caption\n{caption}\n:::\n\n::: table-scroll\n{body}\n:::\n:::"
        ]
    return blocks + content


def _image(path: Path, width: int | None, caption: str = "", label: str = "") -> str:
    attributes = " ".join(([f"#{label}"] if label else []) + ([f"width={width}px"] if width else []))
    return f"![{caption}](<{path}>)" + (f"{{{attributes}}}" if attributes else "")


def _text_block(text: str) -> str:
    text = _ANSI.sub("", text).rstrip("\n")
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {{.cell-output}}\n{text}\n{fence}" if text.strip() else ""


def _pandoc(markdown: str, page: dict[str, Any], stylesheets: list[Path], filters: list[Path]) -> str:
    import pypandoc

    args = [
        "--standalone",
        "--embed-resources",
        "--section-divs",
        "--mathml",
        "--wrap=none",
        *(f"--lua-filter={path}" for path in filters),
        *(f"--css={sheet}" for sheet in stylesheets),
    ]
    if page.get("toc"):
        args += ["--toc", f"--toc-depth={int(page.get('toc-depth', 3))}"]
    if page.get("number-sections"):
        args.append("--number-sections")
    args += [f"--metadata={key}:{page[key]}" for key in ("lang", "toc-title") if key in page]
    try:
        return pypandoc.convert_text(markdown, to="html5", format="markdown", extra_args=args)
    except RuntimeError as err:
        raise RenderError(f"pandoc failed: {_ANSI.sub('', str(err))}") from err
