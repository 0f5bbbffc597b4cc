"""A commit message's shape (CONTRIBUTING.md): a subject of at most 72 characters, then a blank
line before the body. Run by pre-commit's commit-msg hook with the message file's path."""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 72


def problems(message: str) -> list[str]:
    lines = [line for line in message.splitlines() if not line.startswith("#")]
    if not lines or not lines[0].strip():
        return ["the subject (first line) is empty"]
    out = []
    if len(lines[0]) > LIMIT:
        out.append(f"the subject has {len(lines[0])} characters, more than {LIMIT}: say what "
                   "changed in it and move the details to the body")
    if len(lines) > 1 and lines[1].strip():
        out.append("the second line must be blank: subject, blank line, body")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/check_commit_message.py MESSAGE_FILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    found = problems(path.read_text(encoding="utf-8"))
    for problem in found:
        print(f"error: {path}: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
