"""The README and docs/: numbers rendered from the results files, links that resolve, no history.

The pages are for users: what they quote from a recorded run or benchmark is rendered from
its file by tools/render_docs.py, so it cannot go stale; history (commit hashes, dates, issue
numbers) belongs in CHANGELOG.md and results/.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IDS = [p.relative_to(ROOT).as_posix() for p in PAGES]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def render_docs():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "tools" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose(page: Path) -> str:
    """The page without its code blocks and inline code."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text(encoding="utf-8")))


def test_quoted_results_are_rendered_from_the_results_files():
    tool = render_docs()
    assert tool.stale() == [], "run python tools/render_docs.py"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- rendered: runs -->" in readme and "<!-- rendered: headline -->" in readme
    for _, run in tool.recorded_runs():  # each recorded run's score is on the first screen
        assert f"sacreBLEU {run['bleu']['sacrebleu']:.1f}" in readme


def test_a_stale_block_is_found(tmp_path, monkeypatch):
    tool = render_docs()
    page = tmp_path / "README.md"
    page.write_text("<!-- rendered: runs -->\n| old | table |\n<!-- end rendered -->\n")
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "PAGES", ["README.md"])
    assert tool.stale() == ["README.md: runs"]
    assert tool.main([]) == 0 and tool.stale() == []
    assert "| old | table |" not in page.read_text()


def test_readme_reads_in_five_minutes():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_links_resolve(page):
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)}: link to {target}, which is missing"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_no_development_history(page):
    text = prose(page)
    for pattern, what in [(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b",
                           "a commit hash"),
                          (r"\b20[0-9]{2}-[01][0-9]-[0-3][0-9]\b", "a date"),
                          (r"(?<![\w&/])#[0-9]{1,4}\b", "an issue number")]:
        found = re.findall(pattern, text)
        assert not found, f"{page.relative_to(ROOT)}: {what} in the prose: {found[:3]}"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_headings_carry_their_chinese_term(page):
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if re.match(r"#{1,3} ", line):
            assert re.search(r"\|\s*[\u4e00-\u9fff]", line), (
                f"{page.relative_to(ROOT)}: heading without its Chinese term: {line}")


def test_pre_commit_runs_the_projects_checks(tmp_path):
    """.pre-commit-config.yaml is valid and its hooks are the checks the suite runs elsewhere
    (ruff in make lint, the pairs in test_notebooks.py, the rendered blocks above): each hook's
    command names what exists, and the commit-message hook passes a well-formed message."""
    import importlib.util
    import shlex
    import subprocess
    import sys

    import yaml  # pre-commit's own dependency (the dev extra)

    config_file = ROOT / ".pre-commit-config.yaml"
    valid = subprocess.run([sys.executable, "-m", "pre_commit", "validate-config",
                            str(config_file)], capture_output=True, text=True)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    hooks = {hook["id"]: hook for repo in yaml.safe_load(config_file.read_text())["repos"]
             for hook in repo["hooks"]}
    assert {"ruff", "notebook-pairs", "rendered-docs", "commit-subject"} <= set(hooks)
    for name, hook in hooks.items():
        argv = shlex.split(hook["entry"])
        assert argv[0] == "python", f"{name}: runs {argv[0]}, not the environment's python"
        if argv[1] == "-m":
            assert importlib.util.find_spec(argv[2]), f"{name}: no module {argv[2]}"
        else:
            assert (ROOT / argv[1]).is_file(), f"{name}: no file {argv[1]}"
        assert all((ROOT / a).exists() for a in argv[2:] if a.startswith("tests/")), name
    message = tmp_path / "COMMIT_EDITMSG"
    message.write_text("Render the README's results from results/\n\nThe body.\n")
    done = subprocess.run([sys.executable, *shlex.split(hooks["commit-subject"]["entry"])[1:],
                           str(message)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("message, complaint", [
    ("Subject\n\nbody", None),
    ("x" * 72, None),
    ("x" * 73, "73 characters"),
    ("Subject\nbody on the second line", "second line must be blank"),
    ("\n\nbody", "subject (first line) is empty"),
])
def test_commit_message_shape(message, complaint):
    spec = importlib.util.spec_from_file_location(
        "check_commit_message", ROOT / "tools" / "check_commit_message.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = module.problems(message)
    assert (complaint is None and found == []) or any(complaint in p for p in found), found
