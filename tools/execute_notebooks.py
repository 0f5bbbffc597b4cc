"""Execute notebooks and store their outputs as a reader should see them.

    python tools/execute_notebooks.py notebooks/06_training.py [...]   # execute, sync, tidy
    python tools/execute_notebooks.py --tidy-only notebooks/06_training.ipynb   # only tidy

Executing is ``jupytext --sync --execute``. Tidying then merges each cell's consecutive
stream outputs and keeps only what a terminal would finally show: a progress bar redrawn
with carriage returns 900 times is stored as its last state, not as 900 lines (JupyterLab
draws it in place while it runs; a static page or GitHub would show every redraw).
Last, the slide metadata of the pair is set again (``docs/book/mark_slides.py``): where the
slides break depends on how tall the new outputs are.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from jupytext.cli import jupytext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "book"))
from mark_slides import mark_pair  # noqa: E402

_REDRAWN = re.compile(r"[^\n]*\r(?!\n)")  # text that a later carriage return overwrote


def final_text(text: str) -> str:
    """What a terminal shows after printing ``text``: each line's last carriage-return redraw.

    >>> final_text("\\r 10%\\r 50%\\r100%\\ndone\\n")
    '100%\\ndone\\n'
    """
    return _REDRAWN.sub("", text.replace("\r\n", "\n"))


def tidy_outputs(notebook) -> int:
    """Merge consecutive stream outputs of the same name in every code cell and resolve their
    carriage returns; returns how many outputs were removed."""
    removed = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            previous = outputs[-1] if outputs else None
            if (output.output_type == "stream" and previous is not None
                    and previous.output_type == "stream" and previous.name == output.name):
                previous.text += output.text
                removed += 1
            else:
                outputs.append(output)
        for output in outputs:
            if output.output_type == "stream":
                output.text = final_text(output.text)
        cell.outputs = [o for o in outputs if o.output_type != "stream" or o.text.strip()]
        removed += len(outputs) - len(cell.outputs)
    return removed


def tidy_file(path: Path) -> int:
    notebook = nbformat.read(path, as_version=4)
    removed = tidy_outputs(notebook)
    if removed:
        nbformat.write(notebook, path)
    return removed


def main(argv: list[str]) -> int:
    tidy_only = "--tidy-only" in argv
    paths = [Path(a) for a in argv if a != "--tidy-only"]
    if not paths:
        print(__doc__)
        return 2
    for path in paths:
        if not tidy_only:  # executed in the notebook's folder, as JupyterLab does
            status = jupytext(["--sync", "--execute", "--run-path", str(path.parent), str(path)])
            if status:
                return status
        ipynb = path.with_suffix(".ipynb")
        print(f"{ipynb.name}: {tidy_file(ipynb)} stream outputs merged or dropped")
        source = path.with_suffix(".py")
        if source.exists() and mark_pair(source):
            print(f"{source.stem}: slide breaks moved to fit the new outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
