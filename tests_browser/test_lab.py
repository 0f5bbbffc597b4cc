"""JupyterLab itself in headless Chromium: start ``jupyter lab`` on 127.0.0.1 with a token on a
copy of notebook 03 without its outputs, open it, run its first cells and its altair chart, and
check that their outputs appear (text, and the chart drawn as svg/canvas)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest
from checks import chart_problems
from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "03_multi_head.ipynb"
CHART_CELL = "attention_chart(maps"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """(URL of the copied notebook with the token, log file) of a JupyterLab started here."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, tmp_path / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, TRANSFORMER_PROFILE="cpu",
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = tmp_path / "lab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", "--allow-root"]
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"jupyter lab exited:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        else:
            pytest.fail(f"jupyter lab did not answer in 60 s:\n{log.read_text()[-3000:]}")
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def run_cell(page, cell):
    """Select a cell and run it with Shift+Enter, as a person would."""
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")


def test_lab_runs_notebook(watched, lab):
    try:
        check_lab(watched, *lab)
    finally:
        watched.screenshot("lab-03_multi_head")


def check_lab(watched, url, log):
    page = watched.page
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    # the kernel has started once the status bar names it and says Idle
    page.wait_for_function("""() => /\\| Idle/.test(
        document.querySelector(".jp-StatusBar-Widget, #jp-main-statusbar")?.textContent)""",
                           timeout=60_000)
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    code = page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell")
    for index in range(3):  # the first code cells: imports and the banner, then two checks
        run_cell(page, code.nth(index))
        page.wait_for_function(
            """(i) => { const cell = document.querySelectorAll(
                    ".jp-NotebookPanel .jp-Notebook .jp-CodeCell")[i];
                const prompt = cell.querySelector(".jp-InputPrompt").textContent;
                return /\\[\\d+\\]/.test(prompt) && !prompt.includes("*"); }""",
            arg=index, timeout=60_000)
        outputs = code.nth(index).locator(".jp-OutputArea-output")
        assert outputs.count() > 0, f"code cell {index} ran but shows no output"
        assert not code.nth(index).locator(".jp-OutputArea-output[data-mime-type="
                                           "'application/vnd.jupyter.stderr'] .ansi-red-fg"
                                           ).count(), f"code cell {index} raised an error"
    assert "Outputs produced with profile" in code.nth(0).inner_text()
    chart_cell = cells.filter(has_text=CHART_CELL).first
    run_cell(page, chart_cell)
    chart_cell.locator(".jp-OutputArea-output").first.wait_for(timeout=60_000)
    chart_cell.locator("canvas, svg").first.wait_for(timeout=30_000)
    chart_cell.scroll_into_view_if_needed()
    problems = chart_problems(page) + watched.problems()
    assert not problems, "\n".join(problems) + f"\n(server log: {log})"
