"""Draw the README's picture: encoder-decoder attention of a recorded run's trained model.

    python tools/readme_figure.py RUN_DIR/checkpoints/step_NNNNNNNN.pt

The checkpoint is the one the recorded run evaluated (``evaluated_checkpoint`` in
``results/runs/<run>.json``; ``reproduce`` keeps it in the run directory). The model
translates one test sentence with beam 4, then reads its attention weights on its own
translation (``Transformer.attention_maps``); the figure shows every head of the last decoder
layer's encoder-decoder attention (Section 3.2.3), written to docs/images/attention.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from transformer.apps.viz import attention_heatmap  # noqa: E402
from transformer.engine.checkpoint import load_model  # noqa: E402
from transformer.engine.evaluate import source_ids, translate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "Zwei junge Männer stehen neben einem Auto und unterhalten sich."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--sentence", default=SENTENCE, help="the source sentence")
    p.add_argument("--out", default=str(ROOT / "docs" / "images" / "attention.png"))
    args = p.parse_args(argv)
    model, tokenizer, _ = load_model(args.checkpoint)
    model.eval()
    c = model.config
    [hyp] = translate(model, tokenizer, [args.sentence], beam_size=4)
    [src] = source_ids(tokenizer, [args.sentence], c)
    tgt = [c.bos_id] + tokenizer.encode(hyp)  # the decoder's input: BOS, then the output
    with torch.no_grad():
        maps = model.attention_maps(torch.tensor([src]), torch.tensor([tgt]))
    cross = maps["cross"][-1, 0]  # last layer: (heads, target positions, source positions)
    keys = [tokenizer.id_to_token(i) for i in src]
    queries = [tokenizer.id_to_token(i) for i in tgt]
    fig, axes = plt.subplots(1, c.n_heads, figsize=(4.0 * c.n_heads, 4.6), squeeze=False)
    for head, ax in enumerate(axes[0]):
        attention_heatmap(cross[head], keys, queries, ax=ax, vmax=1.0, colorbar=False,
                          title=f"head {head + 1}", xlabel="source token (key)",
                          ylabel="target token read (query)" if head == 0 else "")
    fig.suptitle(f"Encoder-decoder attention, decoder layer {c.n_layers} of {c.n_layers}: "
                 f"“{args.sentence}” → “{hyp}”")
    fig.tight_layout()
    fig.colorbar(axes[0][0].images[0], ax=list(axes[0]), fraction=0.015, pad=0.01,
                 label="attention weight (0 to 1)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {hyp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
