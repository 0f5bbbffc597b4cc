"""The table of ``bench/gpu_run.sh``'s ``variants`` step: settings of a recipe side by side.

    python bench/variants_table.py OUT "NAME DIR OPTIONS...; NAME DIR OPTIONS..."

For each variant it reads what the step left in OUT (``variant_<name>_log.jsonl``, the
training log; ``variant_<name>_beam1.json`` and ``..._beam5.json``, the test set scored by
``transformer evaluate``) and writes one row to ``OUT/variants.json``: the options, the steps
trained, the median training speed, the lowest validation perplexity and the BLEU of both
decodes (sacreBLEU, and lowercased tokenized BLEU, the metric the published Multi30k
results use).  A variant that failed keeps the fields it reached.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def variant_row(out: Path, entry: str) -> dict:
    """One variant's settings, training and scores, from its files in ``out``."""
    name, direction, *options = entry.split()
    row = {"name": name, "direction": direction, "options": " ".join(options)}
    log = out / f"variant_{name}_log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    if train:
        row.update(steps=train[-1]["step"], wall_time_s=train[-1]["wall_time"],
                   tokens_per_s=round(statistics.median(r["tokens_per_s"] for r in train)))
    if val:
        row["best_val_ppl"] = round(min(r["ppl"] for r in val), 3)
    for beam in (1, 5):
        scores = out / f"variant_{name}_beam{beam}.json"
        if scores.exists():
            bleu = json.loads(scores.read_text())
            row[f"beam{beam}"] = {k: round(bleu[k], 2) for k in ("sacrebleu", "tokenized_bleu_lc")
                                  if k in bleu}
    return row


def main(argv=None) -> list[dict]:
    out, variants = (argv or sys.argv[1:])[:2]
    table = [variant_row(Path(out), entry) for entry in variants.split(";") if entry.split()]
    for row in table:
        print(json.dumps(row))
    (Path(out) / "variants.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
