"""Rendering the Quarto report to one self-contained HTML file, with Quarto or without it.

Engine ``quarto``: ``quarto render`` of a private copy of the report folder (so concurrent renders never
share Quarto's intermediate files), executed in the report folder, then moved to the requested path.

Engine ``offline`` (Quarto cannot be installed everywhere): the same ``.qmd`` source is read by jupytext as
R Markdown, so each ```` ```{python} ```` chunk becomes a code cell; nbclient executes the cells in this
environment's ``python3`` kernel; the outputs are assembled into pandoc Markdown the way Quarto would
(``#|`` cell options honored, figures and tables numbered, the cross-references ``@fig-…``, ``@tbl-…`` and
``@sec-…`` resolved, unknown ones rejected); and pandoc writes one standalone page with every resource
embedded and math as MathML, so the file references nothing outside itself.

Both engines tell the cells where the study tables are (:data:`TABLES_ENV`, an absolute path) and which
engine ran (:data:`RENDERER_ENV`). A cell that raises stops the render with the cell's error, and no page
is written; the output file only ever appears complete (written beside it, then renamed).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rnn_gradients.files import atomic_write_text

TABLES_ENV = "RNN_GRADIENTS_TABLES"
RENDERER_ENV = "RNN_GRADIENTS_RENDERER"
ENGINES = ("auto", "quarto", "offline")
Engine = Literal["auto", "quarto", "offline"]

_REF_NAMES = {"fig": "Figure", "tbl": "Table", "sec": "Section"}
# Every cross-reference kind Quarto knows; the offline engine numbers fig/tbl/sec and rejects the rest.
_QUARTO_REF_KINDS = ("fig", "tbl", "sec", "eq", "lst", "thm", "lem", "cor", "prp", "cnj", "def", "exm", "exr")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_KINDS = "|".join(_QUARTO_REF_KINDS)
_BRACKET_REF = re.compile(rf"\[(-?)@((?:{_KINDS})-{_LABEL})\]")
_BARE_REF = re.compile(rf"(?<![\w@/.\-])@((?:{_KINDS})-{_LABEL})")
_INLINE_CODE = re.compile(r"(`+)(?:.+?)\1")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*(?:\{([^}]*)\})?\s*$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I
)
_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
_CELL_DEFAULTS = {"echo": True, "output": True, "warning": True, "include": True, "eval": True}


class RenderError(RuntimeError):
    """The report could not be rendered: a cell raised, a reference is unknown, or a tool failed."""


def render_report(qmd: Path, out_html: Path, tables_dir: Path, engine: Engine = "auto", *, timeout: int = 900) -> str:
    """Render ``qmd`` to the single HTML file ``out_html`` from the study tables in ``tables_dir``.

    ``engine``: "quarto", "offline", or "auto" (quarto when it is on PATH). ``timeout`` bounds one cell's
    execution (offline) or the whole Quarto run, in seconds. Returns the engine used.
    """
    qmd, out_html, tables_dir = Path(qmd).resolve(), Path(out_html).resolve(), Path(tables_dir).resolve()
    if engine not in ENGINES:
        raise ValueError(f"unknown render engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not qmd.is_file():
        raise FileNotFoundError(f"report source not found: {qmd}")
    if not tables_dir.is_dir():
        raise FileNotFoundError(f"study tables directory not found: {tables_dir}")
    chosen = engine if engine != "auto" else ("quarto" if shutil.which("quarto") else "offline")
    if chosen == "quarto":
        render_quarto(qmd, out_html, tables_dir, timeout=timeout)
    else:
        render_offline(qmd, out_html, tables_dir, timeout=timeout)
    return chosen


def _cell_environment(tables_dir: Path, engine: str) -> dict[str, str]:
    return {**os.environ, TABLES_ENV: str(tables_dir), RENDERER_ENV: engine, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def render_quarto(qmd: Path, out_html: Path, tables_dir: Path, *, timeout: int = 900) -> None:
    """``quarto render`` of a temporary copy of the report (the qmd and its stylesheets), run in its folder.

    The copy keeps concurrent renders from sharing Quarto's intermediate files; ``--execute-dir`` runs the
    cells in the report's own folder, as the offline engine does. Quarto's ``--output`` takes a file name only
    (no directory), so the page is written inside the copy and then moved into place; ``QUARTO_PYTHON`` pins
    the Python (and so the Jupyter kernel) of this process.
    """
    quarto = shutil.which("quarto")
    if quarto is None:
        raise FileNotFoundError("quarto is not on PATH; render with engine 'offline'")
    front, _ = split_front_matter(qmd.read_text(encoding="utf-8"))
    sources = [qmd.name, *PageOptions.from_front_matter(front).css]
    with tempfile.TemporaryDirectory(prefix="rnn-gradients-quarto-") as tmp:
        work = Path(tmp) / "report"
        for name in sources:
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(qmd.parent / name, target)
        env = {**_cell_environment(tables_dir, "quarto"), "QUARTO_PYTHON": sys.executable}
        command = [
            quarto, "render", qmd.name, "--to", "html", "--output", out_html.name,
            "--execute-dir", str(qmd.parent),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise RenderError(f"quarto render of {qmd} took longer than {timeout} s") from err
        if done.returncode != 0:
            raise RenderError(f"quarto render of {qmd} failed ({done.returncode}):\n{done.stderr[-6000:]}")
        page = (work / out_html.name).read_text(encoding="utf-8")
    atomic_write_text(out_html, page)


@dataclass(frozen=True)
class PageOptions:
    """The front-matter options that shape the offline page (Quarto's names, ``format: html:`` or top level)."""

    title: str | None = None
    subtitle: str | None = None
    author: Any = None
    date: str | None = None
    lang: str = "en"
    toc: bool = False
    toc_depth: int = 3
    toc_title: str = "Contents"
    number_sections: bool = False
    math: str = "mathml"
    code_overflow: Literal["scroll", "wrap"] = "scroll"
    css: tuple[str, ...] = ()
    cell_defaults: dict[str, Any] = field(default_factory=lambda: dict(_CELL_DEFAULTS))

    @classmethod
    def from_front_matter(cls, front: Mapping[str, Any], source_mtime: float | None = None) -> PageOptions:
        formats = front.get("format")
        html = formats.get("html") if isinstance(formats, Mapping) else None
        options = {**front, **(html if isinstance(html, Mapping) else {})}
        math = options.get("html-math-method", "mathml")
        math = str(math.get("method") if isinstance(math, Mapping) else math)
        css = options.get("css") or ()
        code_overflow = options.get("code-overflow", "scroll")
        if code_overflow not in ("scroll", "wrap"):
            raise ValueError(f"code-overflow must be 'scroll' or 'wrap', got {code_overflow!r}")
        execute = front.get("execute") if isinstance(front.get("execute"), Mapping) else {}
        return cls(
            title=_text_or_none(options.get("title")),
            subtitle=_text_or_none(options.get("subtitle")),
            author=options.get("author"),
            date=_resolve_date(options.get("date"), source_mtime),
            lang=str(options.get("lang", "en")),
            toc=bool(options.get("toc", False)),
            toc_depth=int(options.get("toc-depth", 3)),
            toc_title=str(options.get("toc-title", "Contents")),
            number_sections=bool(options.get("number-sections", False)),
            math=math,
            code_overflow=code_overflow,
            css=(css,) if isinstance(css, str) else tuple(str(c) for c in css),
            cell_defaults={**_CELL_DEFAULTS, **{k: v for k, v in execute.items() if k in _CELL_DEFAULTS}},
        )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _resolve_date(value: Any, source_mtime: float | None) -> str | None:
    """Quarto's special dates: ``today``, ``now``, ``last-modified`` (of the source); others as written."""
    if value is None:
        return None
    text = str(value)
    if text == "today":
        return dt.date.today().isoformat()
    if text == "now":
        return dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    if text == "last-modified" and source_mtime is not None:
        return dt.date.fromtimestamp(source_mtime).isoformat()
    return text


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The YAML front matter (``---`` fenced, at the very top) as a dict, and the rest of the document."""
    text = text.replace("\r\n", "\n")
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    front = yaml.safe_load(match.group(1) or "") or {}
    if not isinstance(front, dict):
        raise ValueError("the front matter must be a YAML mapping")
    return front, text[match.end() :]


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


def render_offline(qmd: Path, out_html: Path, tables_dir: Path, *, timeout: int = 900) -> None:
    """Execute the report's cells with nbclient and write the page with pandoc (module docstring)."""
    import jupytext

    front, body = split_front_matter(qmd.read_text(encoding="utf-8"))
    page = PageOptions.from_front_matter(front, qmd.stat().st_mtime)
    if page.math not in ("mathml", "plain"):
        raise ValueError(
            f"html-math-method {page.math!r} loads its script from the network; the offline renderer writes "
            "self-contained pages with 'mathml' (or 'plain')"
        )
    sheets = [(qmd.parent / name).resolve() for name in page.css]
    missing = [str(sheet) for sheet in sheets if not sheet.is_file()]
    if missing:
        raise FileNotFoundError(f"stylesheet named in the front matter not found: {', '.join(missing)}")
    notebook = jupytext.reads(body, fmt="Rmd")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    options = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            options.append({})
            continue
        try:
            cell_opts, _ = cell_options(cell.source)
        except ValueError as err:
            raise ValueError(f"{qmd}: {err}") from err
        merged = {**page.cell_defaults, **cell_opts}
        if not merged["eval"]:
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), "skip-execution"]
        options.append(merged)
    with tempfile.TemporaryDirectory(prefix="rnn-gradients-render-") as tmp:
        work = Path(tmp)
        _execute(notebook, qmd, _cell_environment(tables_dir, "offline"), timeout, work / "kernel.log")
        markdown = _assemble(notebook.cells, options, work, page)
        layout = work / "page-layout.css"
        layout.write_text(_PAGE_CSS + (_WRAP_CODE_CSS if page.code_overflow == "wrap" else ""), encoding="utf-8")
        stylesheets = [layout, *sheets]
        html = _pandoc(_metadata_block(page) + markdown, page, stylesheets, [work, qmd.parent])
    external = _EXTERNAL.search(html)
    if external:
        raise RenderError(f"the page would load an external resource: {external.group(0)[:200]}")
    atomic_write_text(out_html, html)


def _execute(notebook: Any, qmd: Path, env: dict[str, str], timeout: int, kernel_log: Path) -> None:
    """Run every code cell in a fresh ``python3`` kernel started in the report's folder.

    The kernel's own stderr (start-up chatter) goes to ``kernel_log``, quoted only if the kernel dies.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, CellTimeoutError, DeadKernelError

    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(qmd.parent)}}
    )
    with kernel_log.open("w", encoding="utf-8") as log:
        try:
            client.execute(env=env, stderr=log)
        except (CellControlSignal, CellTimeoutError, DeadKernelError) as err:
            failure = _failed_cell(notebook, err)
            if isinstance(err, DeadKernelError):
                failure += "\n\nkernel log:\n" + kernel_log.read_text(encoding="utf-8")[-4000:]
            raise RenderError(f"{qmd.name}: {failure}") from err


def _failed_cell(notebook: Any, err: Exception) -> str:
    """Which cell failed and its error, traceback in plain text."""
    code_index = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                options, code = cell_options(cell.source)
                where = options.get("label") or (code.splitlines() or [""])[0][:60]
                trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
                return f"code cell {code_index} ({where}) raised {output['ename']}: {output['evalue']}\n\n{trace}"
    return f"{type(err).__name__}: {_ANSI.sub('', str(err))}"


@dataclass
class _Numbering:
    figures: int = 0
    tables: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def register(self, label: str, kind: Literal["fig", "tbl"]) -> str:
        if label in self.labels:
            raise RenderError(f"label {label!r} is used twice")
        if kind == "fig":
            self.figures += 1
            self.labels[label] = f"Figure {self.figures}"
        else:
            self.tables += 1
            self.labels[label] = f"Table {self.tables}"
        return self.labels[label]


def _assemble(cells: list[Any], options: list[dict[str, Any]], image_dir: Path, page: PageOptions) -> str:
    """Pandoc Markdown of the executed cells, figures/tables numbered and cross-references resolved."""
    numbering = _Numbering()
    blocks: list[str] = []
    for index, (cell, opts) in enumerate(zip(cells, options, strict=True)):
        if cell.cell_type in ("markdown", "raw"):
            blocks.append(cell.source)
        elif opts["include"] is not False:
            blocks.extend(_code_cell_blocks(index, cell, opts, image_dir, numbering))
    document = "\n\n".join(block for block in blocks if block.strip()) + "\n"
    labels = dict(numbering.labels)
    labels.update(_section_labels(document, page.number_sections))
    return resolve_crossrefs(document, labels)


@dataclass(frozen=True)
class _Image:
    path: Path
    width: int | None

    def markdown(self, alt: str = "", identifier: str | None = None) -> str:
        attributes = [f"#{identifier}"] if identifier else []
        if self.width:
            attributes.append(f"width={self.width}px")
        suffix = "{" + " ".join(attributes) + "}" if attributes else ""
        return f"![{alt}](<{self.path}>){suffix}"


def _code_cell_blocks(index: int, cell: Any, opts: dict[str, Any], image_dir: Path, numbering: _Numbering) -> list[str]:
    _, code = cell_options(cell.source)
    blocks = [f"```python\n{code}\n```"] if opts["echo"] and code.strip() else []
    if opts["output"] is False:
        return blocks
    label = str(opts.get("label") or "")
    images: list[_Image] = []
    content: list[str] = []
    for number, output in enumerate(cell.get("outputs", [])):
        kind = output.get("output_type")
        if kind == "stream":
            if output.get("name") == "stdout" or opts["warning"]:
                content.append(_text_block(output.get("text", "")))
            continue
        if kind not in ("display_data", "execute_result"):
            continue
        data = output.get("data", {})
        image_type = next((m for m in _IMAGE_TYPES if m in data), None)
        if image_type is not None:
            image = _save_image(data[image_type], image_type, image_dir / f"cell{index}-{number}")
            width = (output.get("metadata", {}).get(image_type) or {}).get("width")
            image = _Image(image, int(width) if width else None)
            if label.startswith("fig-"):
                images.append(image)
            else:
                content.append(image.markdown(_one_line(str(opts.get("fig-cap") or ""))))
        elif "text/markdown" in data:
            content.append(data["text/markdown"])
        elif "text/html" in data:
            content.append(f"```{{=html}}\n{data['text/html']}\n```")
        elif "text/plain" in data:
            content.append(_text_block(data["text/plain"]))
    if label.startswith("fig-") and images:
        blocks.extend(content)
        blocks.append(_figure_block(label, str(opts.get("fig-cap") or ""), images, numbering))
    elif label.startswith("tbl-") and content:
        blocks.append(_table_block(label, str(opts.get("tbl-cap") or ""), content, numbering))
    else:
        blocks.extend(content)
    return blocks


def _save_image(payload: str, mime: str, stem: Path) -> Path:
    path = stem.with_suffix("." + _IMAGE_TYPES[mime])
    path.write_bytes(payload.encode("utf-8") if mime == "image/svg+xml" else base64.b64decode(payload))
    return path


def _text_block(text: str) -> str:
    text = _ANSI.sub("", text).rstrip("\n")
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {{.cell-output}}\n{text}\n{fence}" if text.strip() else ""


def _one_line(caption: str) -> str:
    return " ".join(caption.split())


def _figure_block(label: str, caption: str, images: list[_Image], numbering: _Numbering) -> str:
    """One numbered figure: a pandoc implicit figure, or a captioned group when the cell drew several images."""
    caption = f"[{numbering.register(label, 'fig')}:]{{.figure-number}} {_one_line(caption)}"
    if len(images) == 1:
        return images[0].markdown(caption, label)
    pictures = "\n\n".join(image.markdown() for image in images)
    return f"::: {{#{label} .figure-group}}\n{pictures}\n\n::: {{.figure-caption}}\n{caption}\n:::\n:::"


def _table_block(label: str, caption: str, content: list[str], numbering: _Numbering) -> str:
    name = numbering.register(label, "tbl")
    body = "\n\n".join(content)
    return (
        f"::: {{#{label} .table-float}}\n::: {{.table-caption}}\n[{name}:]{{.table-number}} {_one_line(caption)}\n"
        f":::\n\n::: {{.table-scroll}}\n{body}\n:::\n:::"
    )


def _outside_fences(document: str) -> list[tuple[bool, str]]:
    """The document's lines, each flagged True when it lies outside fenced code (where prose lives)."""
    flagged: list[tuple[bool, str]] = []
    fence: str | None = None
    for line in document.split("\n"):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            flagged.append((False, line))
        elif fence is not None:
            if (
                match
                and match.group(1)[0] == fence[0]
                and len(match.group(1)) >= len(fence)
                and not line.strip("`~ \t")
            ):
                fence = None
            flagged.append((False, line))
        else:
            flagged.append((True, line))
    return flagged


def _section_labels(document: str, numbered: bool) -> dict[str, str]:
    """``sec-…`` ids of ATX headings, mapped to "Section 2.1" as pandoc's ``--number-sections`` numbers them."""
    counters = [0] * 6
    labels: dict[str, str] = {}
    for prose, line in _outside_fences(document):
        match = _HEADING.match(line) if prose else None
        if match is None:
            continue
        level, title, attributes = len(match.group(1)), match.group(2), match.group(3) or ""
        unnumbered = ".unnumbered" in attributes.split() or "-" in attributes.split()
        if not unnumbered:
            counters[level - 1] += 1
            counters[level:] = [0] * (6 - level)
        identifier = next((a[1:] for a in attributes.split() if a.startswith("#")), None)
        if identifier and identifier.startswith("sec-"):
            number = ".".join(str(c) for c in counters[:level])
            labels[identifier] = f"Section {number}" if numbered and not unnumbered else title
    return labels


def resolve_crossrefs(document: str, labels: Mapping[str, str]) -> str:
    """Replace ``@fig-x``, ``[@fig-x]`` and ``[-@fig-x]`` (prose only) by links such as ``[Figure 3](#fig-x)``.

    ``labels`` maps each label to its name ("Figure 3"); a reference to any other label raises RenderError.
    """
    unknown: list[str] = []

    def link(label: str, bare_number: bool) -> str:
        if label not in labels:
            unknown.append(label)
            return label
        name = labels[label]
        return f"[{name.split(' ', 1)[-1] if bare_number else name}](#{label})"

    def in_prose(text: str) -> str:
        text = _BRACKET_REF.sub(lambda m: link(m.group(2), m.group(1) == "-"), text)
        return _BARE_REF.sub(lambda m: link(m.group(1), False), text)

    lines = []
    for prose, line in _outside_fences(document):
        if prose and "@" in line:
            pieces, last = [], 0
            for code in _INLINE_CODE.finditer(line):
                pieces.extend([in_prose(line[last : code.start()]), code.group(0)])
                last = code.end()
            pieces.append(in_prose(line[last:]))
            line = "".join(pieces)
        lines.append(line)
    if unknown:
        known = ", ".join(sorted(labels)) or "none"
        raise RenderError(f"unresolved cross-references: {', '.join(sorted(set(unknown)))} (known labels: {known})")
    return "\n".join(lines)


def _metadata_block(page: PageOptions) -> str:
    meta = {"title": page.title, "subtitle": page.subtitle, "author": page.author, "date": page.date}
    meta = {key: value for key, value in meta.items() if value is not None}
    meta["lang"] = page.lang
    if page.title is not None:
        meta["pagetitle"] = re.sub(r"[*_`$]", "", page.title)
    return f"---\n{yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)}---\n\n"


def _pandoc(markdown: str, page: PageOptions, stylesheets: list[Path], resource_dirs: list[Path]) -> str:
    import pypandoc

    args = [
        "--standalone",
        "--embed-resources",
        "--section-divs",
        "--columns=10000",
        f"--resource-path={os.pathsep.join(str(d) for d in resource_dirs)}",
        *(f"--css={sheet}" for sheet in stylesheets),
    ]
    if page.math == "mathml":
        args.append("--mathml")
    if page.toc:
        args += ["--toc", f"--toc-depth={page.toc_depth}", f"--variable=toc-title:{page.toc_title}"]
    if page.number_sections:
        args.append("--number-sections")
    try:
        return pypandoc.convert_text(markdown, to="html5", format="markdown-citations", extra_args=args)
    except RuntimeError as err:
        raise RenderError(f"pandoc failed: {err}") from err


# Page layout for pandoc's standalone HTML (Quarto brings its own theme): readable measure, a sidebar table of
# contents on wide screens and a boxed one above the text on narrow screens, figure and table styling.
_PAGE_CSS = """
:root {
  --text: #1d2125; --muted: #5b6470; --accent: #1f5f99; --rule: #dfe3e8; --panel: #f5f7f9;
  --sidebar: 17rem; --measure: 58rem;
}
*, *::before, *::after { box-sizing: border-box; }
html { font-size: 16px; -webkit-text-size-adjust: 100%; }
body {
  margin: 0 auto; max-width: var(--measure); padding: 2.5rem 1.5rem 5rem; color: var(--text); background: #fff;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "Liberation Sans",
    "DejaVu Sans", Arial, sans-serif;
  line-height: 1.6; overflow-wrap: break-word; font-kerning: normal;
}
@media (min-width: 1200px) {
  body { margin-left: max(calc(var(--sidebar) + 2.5rem), calc((100vw - var(--measure)) / 2)); margin-right: auto; }
  nav#TOC {
    position: fixed; top: 0; left: 0; bottom: 0; width: var(--sidebar); overflow-y: auto;
    padding: 2rem 1.1rem 2rem 1.4rem; border-right: 1px solid var(--rule); background: var(--panel);
  }
}
@media (max-width: 1199px) {
  nav#TOC { border: 1px solid var(--rule); border-radius: 8px; background: var(--panel); padding: 1rem 1.4rem;
    margin: 0 0 2.5rem; }
}
nav#TOC { font-size: 0.875rem; line-height: 1.45; }
nav#TOC #toc-title, nav#TOC > h2 {
  font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.08em; color: var(--muted);
  margin: 0 0 0.8rem; border: none; padding: 0;
}
nav#TOC ul { list-style: none; margin: 0; padding-left: 0; }
nav#TOC ul ul { padding-left: 1.35rem; margin: 0.15rem 0 0.35rem; }
nav#TOC li { margin: 0.22rem 0; }
nav#TOC > ul > li > a { font-weight: 600; }
nav#TOC a { color: var(--text); text-decoration: none; display: flex; }
nav#TOC a:hover { color: var(--accent); }
nav#TOC .toc-section-number { color: var(--muted); flex: 0 0 2.2em; font-weight: 400; }
header#title-block-header { margin: 0 0 2.5rem; padding-bottom: 1.4rem; border-bottom: 2px solid var(--text); }
header#title-block-header .title { font-size: 2.1rem; line-height: 1.2; margin: 0 0 0.6rem; border: none; }
header#title-block-header .subtitle { font-size: 1.15rem; color: var(--muted); margin: 0 0 0.6rem; }
header#title-block-header .author, header#title-block-header .date { color: var(--muted); margin: 0.2rem 0; }
h1, h2, h3, h4 { line-height: 1.25; font-weight: 650; }
h1 { font-size: 1.6rem; margin: 3.2rem 0 1rem; padding-bottom: 0.35rem; border-bottom: 1px solid var(--rule); }
h2 { font-size: 1.28rem; margin: 2.4rem 0 0.8rem; }
h3 { font-size: 1.08rem; margin: 1.8rem 0 0.6rem; }
.header-section-number { color: var(--accent); margin-right: 0.55em; font-variant-numeric: tabular-nums; }
p, ul, ol { margin: 0 0 1rem; }
a { color: var(--accent); text-underline-offset: 0.15em; }
math[display="block"] { display: block math; overflow-x: auto; margin: 1.1rem 0; padding: 0.2rem 0; }
pre, code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; }
code { font-size: 0.88em; background: var(--panel); padding: 0.1em 0.3em; border-radius: 3px; }
pre { background: var(--panel); border: 1px solid var(--rule); border-radius: 6px; padding: 0.8rem 1rem;
  overflow-x: auto; font-size: 0.82rem; line-height: 1.45; }
pre code { background: none; padding: 0; font-size: inherit; white-space: pre; }
figure, .figure-group { margin: 2rem 0 2.2rem; text-align: center; }
figure img, .figure-group img { max-width: 100%; height: auto; }
figcaption, .figure-caption {
  text-align: left; font-size: 0.9rem; line-height: 1.5; color: var(--muted); margin: 0.7rem auto 0;
  padding-left: 0.8rem; border-left: 3px solid var(--rule); max-width: 52rem;
}
.figure-number, .table-number { font-weight: 650; color: var(--text); }
.table-float { margin: 1.8rem 0 2.2rem; }
.table-caption { font-size: 0.9rem; color: var(--muted); margin-bottom: 0.5rem; }
.table-caption p { margin: 0; }
.table-scroll { overflow: auto; max-height: 36rem; border: 1px solid var(--rule); border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; margin: 0; }
.table-scroll table { width: 100%; }
th, td { padding: 0.38rem 0.6rem; border-bottom: 1px solid var(--rule); vertical-align: top; }
td[style*="right"] { white-space: nowrap; }
thead th { position: sticky; top: 0; background: #fff; border-bottom: 2px solid #9aa3ad; font-weight: 650; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef4fa; }
blockquote { margin: 1rem 0; padding: 0.2rem 1rem; border-left: 4px solid var(--rule); color: var(--muted); }
hr { border: none; border-top: 1px solid var(--rule); margin: 2rem 0; }
@media print {
  nav#TOC { display: none; }
  body { margin: 0 auto; max-width: none; padding: 0; }
  .table-scroll { max-height: none; overflow: visible; }
}
"""

# Quarto's ``code-overflow: wrap``: long code lines wrap inside the block instead of scrolling sideways, with a
# hanging indent so a continuation is not mistaken for a new line (pandoc's own print rules for highlighted code).
_WRAP_CODE_CSS = """
pre code, pre > code.sourceCode { white-space: pre-wrap; overflow-wrap: anywhere; }
pre > code.sourceCode > span { display: inline-block; text-indent: -4em; padding-left: 4em; }
"""
