"""``python3 -m aecourse html``: a lesson as a page whose formulas need no network."""

import re

import nbformat
import pytest

from aecourse import _paths
from aecourse.render import to_html, typeset

pytest.importorskip("latex2mathml")


def test_typeset_turns_each_formula_into_mathml_and_leaves_code_alone():
    formulas = {}
    text = typeset("Draw $z \\sim \\mathcal N(0, I)$, then\n$$\\mathrm{KL} = \\tfrac12 \\sum_j \\mu_j^2$$\n"
                   "but `echo $HOME $PATH` and\n```\nprice = \"$5 or $6\"\n```\nstay code; so does $ 5 and 6 $.",
                   formulas)
    assert len(formulas) == 2 and "$" not in text.split("`echo")[0]
    assert "`echo $HOME $PATH`" in text and 'price = "$5 or $6"' in text and "$ 5 and 6 $" in text
    first, second = formulas.values()
    assert first.startswith("<math") and 'display="inline"' in first and "<mi>z</mi>" in first
    assert 'display="block"' in second and "<mfrac>" in second and "<msubsup>" in second


def test_a_lesson_page_has_its_formulas_as_mathml_and_no_tex_left(tmp_path):
    lesson = _paths.repo_root() / "lessons" / "04_variational_autoencoders" / "04_variational_autoencoders.ipynb"
    page = to_html(lesson, tmp_path / "l4.html").read_text()
    nb = nbformat.read(lesson, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    count = {}
    typeset(markdown, count)
    assert len(re.findall(r"<math\b", page)) >= len(count) > 50
    assert not re.search(r"\$[^$<>\n]*\\(mathcal|mathrm|frac|sum)", page), "TeX left for MathJax"
    assert "AECOURSEMATH" not in page
