"""A static scan of a submission's code for things a fair answer never needs; findings go to the report.

The scan flags for manual review, it does not change a grade: the sandbox and the hidden tests are
the protections, this is a second look. Each finding names the cell, the line and the reason.
"""

from __future__ import annotations

import ast
import re

import nbformat

from .judge import python_of

SUSPICIOUS_NAMES = {
    "get_ipython": "reaches into IPython (input transformers, events, magics)",
    "__builtins__": "changes Python's builtins",
    "input_transformers_cleanup": "an input transformer rewrites later cells, tests included",
    "input_transformers_post": "an input transformer rewrites later cells, tests included",
    "ast_transformers": "an AST transformer rewrites later cells, tests included",
    "_exit": "os._exit ends the kernel",
    "settrace": "a trace function can change how tests run",
    "setprofile": "a profile function can change how tests run",
    "meta_path": "an import hook can change what tests import",
}
SUSPICIOUS_ATTRS = {("sys", "modules"): "edits sys.modules, which decides what tests import",
                    ("signal", "signal"): "changes signal handling (e.g. ignoring interrupts)"}
SUSPICIOUS_IMPORTS = {
    "sqlite3": "opens databases (the gradebook is one)", "builtins": "changes Python's builtins",
    "ctypes": "calls C directly", "gc": "walks the interpreter's objects", "socket": "opens network connections",
    "subprocess": "runs other programs", "importlib": "imports or reloads modules by hand",
    "nbgrader": "uses the grader itself", "sqlalchemy": "opens databases (the gradebook is one)",
    "psycopg": "opens databases", "psycopg2": "opens databases",
}
PATCHABLE = {"aecourse", "check", "integrity", "losses", "models", "training", "recipes", "data", "latent", "anomaly",
             "torch", "nn", "F", "np", "numpy", "math", "builtins", "sys", "os", "nbgrader"}
PATHS = re.compile(r"gradebook|\.db\b|solutions/|autograded|submitted/|/proc/", re.I)
MAGIC = re.compile(r"^\s*(!|%%?(sx|system|run|load|writefile|capture|bash|sh|script))", re.M)


def scan_source(source: str) -> list[tuple[int, str]]:
    """``(line, reason)`` for every suspicious construct in one code cell."""
    found = [(source[:m.start()].count("\n") + 1, f"shell command or magic {m.group(1)!r}")
             for m in MAGIC.finditer(source)]
    code = python_of(source)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return found + [(n, SUSPICIOUS_NAMES[w]) for n, line in enumerate(code.splitlines(), 1)
                        for w in SUSPICIOUS_NAMES if w in line]
    looked_up = {id(c.comparators[0]) for c in ast.walk(tree)  # `name in sys.modules` only reads it
                 if isinstance(c, ast.Compare) and len(c.ops) == 1 and isinstance(c.ops[0], (ast.In, ast.NotIn))}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name) and node.id in SUSPICIOUS_NAMES:
            found.append((line, f"{node.id}: {SUSPICIOUS_NAMES[node.id]}"))
        elif isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else ""
            if node.attr in SUSPICIOUS_NAMES:
                found.append((line, f"{node.attr}: {SUSPICIOUS_NAMES[node.attr]}"))
            elif (base, node.attr) in SUSPICIOUS_ATTRS and id(node) not in looked_up:
                found.append((line, f"{base}.{node.attr}: {SUSPICIOUS_ATTRS[base, node.attr]}"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top in SUSPICIOUS_IMPORTS:
                    found.append((line, f"imports {name}: {SUSPICIOUS_IMPORTS[top]}"))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _root(target) in PATCHABLE:
                    found.append((line, f"assigns to {ast.unparse(target)}: monkeypatching a library"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"setattr", "delattr"}:
            if node.args and _root(node.args[0]) in PATCHABLE:
                found.append((line, f"{node.func.id} on {ast.unparse(node.args[0])}: monkeypatching a library"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and PATHS.search(node.value):
            found.append((line, f"names the path {node.value[:60]!r}: grading files are not for submissions"))
    return sorted(set(found))


def _root(node: ast.AST) -> str:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def scan_notebook(nb: nbformat.NotebookNode) -> list[str]:
    """Findings for every code cell a student could have written (locked cells are restored by nbgrader)."""
    findings = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("locked") or (meta.get("grade") and not meta.get("solution")):
            continue
        for line, reason in scan_source(cell.source):
            findings.append(f"cell {index}, line {line}: {reason}")
    return findings
