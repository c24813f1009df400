"""A lesson as one HTML page that reads offline: ``python3 -m aecourse html``.

nbconvert's HTML leaves formulas as TeX for MathJax, which the page loads from the internet: offline,
or wherever scripts are blocked, a student sees ``$\\mathcal N(0, I)$`` instead of the formula. Here
every formula of the markdown cells is typeset beforehand as MathML (``latex2mathml``), which browsers
draw themselves, so the page needs no network. Code (inline or fenced) is left as it is. Run with
``--execute``, the page also holds every output, and each explorer's still picture with its notice
(``aecourse.widgets``).
"""

from __future__ import annotations

import re
from pathlib import Path

CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)  # left alone: a dollar in code is not math
# $$...$$ (display, may span lines), or $...$ on one line that neither starts nor ends with a space
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$", re.S)
TOKEN = "AECOURSEMATH{:05d}X"  # a placeholder that markdown leaves untouched
# browsers draw MathML a little small next to the text, and a display formula needs room around it
STYLE = ('<style>math { font-size: 115%; } math[display="block"] { font-size: 125%; margin: 0.6em 0; }'
         '</style>')


def typeset(markdown: str, formulas: dict[str, str]) -> str:
    """``markdown`` with each formula replaced by a placeholder; ``formulas`` maps each to its MathML."""
    from latex2mathml.converter import convert

    def one(match: re.Match) -> str:
        display, inline = match.group(1), match.group(2)
        token = TOKEN.format(len(formulas))
        try:
            formulas[token] = convert((display or inline).strip(), display="block" if display else "inline")
        except Exception as err:  # a formula latex2mathml cannot read stays TeX, and says so in the page
            formulas[token] = f"<code title='not typeset: {type(err).__name__}'>{match.group(0)}</code>"
        return token

    parts = CODE.split(markdown)  # odd positions are code
    return "".join(part if i % 2 else MATH.sub(one, part) for i, part in enumerate(parts))


def to_html(notebook: Path | str, out: Path | str, *, execute: bool = False, timeout: int = 3600) -> Path:
    """Write ``notebook`` as a self-contained HTML page at ``out`` (executed first with ``execute``)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook, out = Path(notebook), Path(out)
    nb = nbformat.read(notebook, as_version=4)
    if execute:
        ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(notebook.parent)}})
    formulas: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = typeset(cell.source, formulas)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    for token, mathml in formulas.items():
        if token not in body:
            raise RuntimeError(f"formula {token} of {notebook.name} was lost in the conversion")
        body = body.replace(token, mathml)
    body = body.replace("</head>", STYLE + "\n</head>", 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out
