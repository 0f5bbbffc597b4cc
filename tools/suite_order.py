"""A pytest plugin: how ``make test`` runs the unit tests and the notebooks on two workers.

``make test`` is one pytest run over ``tests`` and ``notebooks`` with this plugin (``-p
tools.suite_order``) and pytest-xdist (``--dist loadscope --no-loadscope-reorder``): each test
file and each notebook goes whole to one worker, in the order below, and a worker takes the
next one when it runs short of work.

The order matters because of what the notebooks train.  Notebook 06 trains the notebook run
and then its twin, the two longest cells of the suite; notebook 07 evaluates the run that 06
trains first, and started early it would only wait for it.  So one worker starts 06 while the
other runs most of the unit tests (about as long as 06's first run trains) and then 07; the
rest of the unit tests and the short notebooks go to whichever worker is free first.  (A
worker takes its next file or notebook when two tests of its current one are left: 06 ends
with two short cells after the twin's, so the worker training the twin takes nothing before
the twin is done.)

At the end pytest prints the time of each part (the sum of its tests' durations), so a slow
suite says where the time went.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

# unit test files from this one on (by name) run after 07: the ones before it take about as
# long as 06's first run trains, so 07 starts when that run is on disk
LATER_TESTS = "tests/test_recipes.py"
# first match wins; anything else goes last
ORDER = ("notebooks/06_training.ipynb", "tests/", "notebooks/07_results.ipynb", LATER_TESTS,
         "notebooks/")


def _rank(nodeid: str) -> int:
    if nodeid.startswith("tests/") and nodeid.split("::")[0] >= LATER_TESTS:
        return ORDER.index(LATER_TESTS)
    return next((i for i, prefix in enumerate(ORDER) if nodeid.startswith(prefix)), len(ORDER))


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: file order kept within a part


def _part(nodeid: str) -> str:
    path = PurePosixPath(nodeid.split("::")[0])
    if path.parts and path.parts[0] == "notebooks":
        return f"notebook {path.stem}"
    return f"{path.parts[0]}/" if len(path.parts) > 1 else path.name


def pytest_terminal_summary(terminalreporter):
    seconds, counts = defaultdict(float), defaultdict(int)
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) in ("setup", "call", "teardown"):
                part = _part(report.nodeid)
                seconds[part] += report.duration
                counts[part] += report.when == "call"
    if len(seconds) < 2:
        return
    terminalreporter.section("time by part (summed test durations; the workers run parts "
                             "side by side)")
    for part, total in sorted(seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{total:7.1f} s  {part} ({counts[part]} tests)")
