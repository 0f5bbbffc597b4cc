"""Code references in the pages link to the package's source, rendered inside the site.

An inline literal that names a file or folder of the package
(``transformer/model/attention.py``) or a dotted name in it (``transformer.engine.beam_search``,
``transformer.apps.viz.attention_chart``) becomes a link to the page ``source/transformer/...``
that build.py writes for that module, at the definition when the name is one (names re-exported
by an ``__init__`` are followed).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"transformer(/\w+)*(\.py|/)?")
DOTTED = re.compile(r"transformer(\.\w+)+")


def module_label(relpath: str) -> str:
    """The target at the top of a module's source page: ``src-transformer.engine.train``."""
    dotted = relpath.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    return f"src-{dotted}".lower()


def definition_label(relpath: str, name: str) -> str:
    return f"{module_label(relpath)}.{name}".lower()


@cache
def _tree(relpath: str) -> ast.Module:
    return ast.parse((ROOT / relpath).read_text(encoding="utf-8"))


def definitions(relpath: str) -> dict[str, int]:
    """Top-level functions and classes of a module: name -> first line (decorators included)."""
    found = {}
    for node in _tree(relpath).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return found


def imported(relpath: str) -> dict[str, list[str]]:
    """Names a module imports from the package: name -> the dotted module it comes from."""
    package = relpath.split("/")[:-1]
    found = {}
    for node in _tree(relpath).body:
        if not isinstance(node, ast.ImportFrom):
            continue
        base = package[:len(package) - node.level + 1] if node.level else []
        source = base + (node.module.split(".") if node.module else [])
        if source[:1] == ["transformer"]:
            for alias in node.names:
                found[alias.asname or alias.name] = source
    return found


def _module_file(parts: list[str]) -> str | None:
    for candidate in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def resolve(text: str, depth: int = 0) -> str | None:
    """The label a code reference should link to, or None when it names nothing of ours."""
    text = text.strip().removesuffix("()")
    if PATH.fullmatch(text) and "/" in text:
        path = ROOT / text
        if path.is_file() and path.suffix == ".py":
            return module_label(text)
        if path.is_dir() and (path / "__init__.py").is_file():
            return module_label(text.rstrip("/") + "/__init__.py")
        return None
    if not DOTTED.fullmatch(text) or depth > 5:
        return None
    parts = text.split(".")
    for cut in range(len(parts), 0, -1):
        relpath = _module_file(parts[:cut])
        if relpath is None:
            continue
        rest = parts[cut:]
        if not rest:
            return module_label(relpath)
        if rest[0] in definitions(relpath):
            return definition_label(relpath, rest[0])
        source = imported(relpath).get(rest[0])
        if source is not None:
            return resolve(".".join(source + rest), depth + 1) or module_label(relpath)
        return module_label(relpath)
    return None


def link_code(app, doctree, docname):
    """Wrap each inline literal that resolves into a link to its source page."""
    from docutils import nodes  # here: build.py's staging uses this module without Sphinx

    if docname.startswith("source/"):
        return
    labels = app.env.get_domain("std").anonlabels
    for literal in list(doctree.findall(nodes.literal)):
        if isinstance(literal.parent, nodes.reference) or "code" in literal.get("classes", []) \
                and literal.get("language"):
            continue
        target = labels.get(resolve(literal.astext()) or "")
        if target is None:
            continue
        target_doc, anchor = target
        uri = app.builder.get_relative_uri(docname, target_doc) + "#" + anchor
        link = nodes.reference("", "", internal=True, refuri=uri, classes=["source-link"])
        literal.replace_self(link)
        link += literal


def setup(app):
    app.connect("doctree-resolved", link_code)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
