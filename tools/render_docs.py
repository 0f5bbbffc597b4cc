"""Render the numbers the README, docs/ and notebooks/README.md quote from their sources.

A rendered block in a Markdown file sits between two comments::

    <!-- rendered: runs -->
    ... generated lines ...
    <!-- end rendered -->

``python tools/render_docs.py`` rewrites every block from ``results/`` (and from the notebooks'
stored outputs, for notebooks/README.md);
``python tools/render_docs.py --check`` changes nothing and exits 1 naming each stale block
(``tests/test_docs.py`` runs the check, so a re-recorded run cannot leave a page behind).
Each block's renderer is a function of ``BLOCKS`` that reads the results files and returns
Markdown lines.  Renderers write links from the repository root (``results/...``); ``render``
makes them relative to the page they land in.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
PAGES = ["README.md", "docs/*.md", "notebooks/README.md"]
BLOCK = re.compile(r"(<!-- rendered: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end rendered -->)",
                   re.S)


def load(relpath: str) -> dict:
    return json.loads((RESULTS / relpath).read_text(encoding="utf-8"))


def link(relpath: str) -> str:
    """A file of ``results/`` as a Markdown link, written from the repository root."""
    path = f"results/{relpath}"
    return f"[`{path}`]({path})"


def recorded_runs() -> list[tuple[str, dict]]:
    """The recorded ``reproduce`` runs (path under ``results/``, run), CPU before GPU, de-en
    before en-de."""
    paths = sorted((RESULTS / "runs").glob("*.json"),
                   key=lambda p: (p.stem.endswith("-gpu"), p.stem))
    return [(p.relative_to(RESULTS).as_posix(), json.loads(p.read_text(encoding="utf-8")))
            for p in paths]


def arrow(run: dict) -> str:
    return f"{run['data']['src']}→{run['data']['tgt']}"


def hardware(run: dict) -> str:
    env = run["environment"]
    if env["device"] == "cpu":
        return f"{env['threads']} CPU threads"
    return env.get("gpu") or env["device"]


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def model(run: dict) -> str:
    m = run["model_config"]
    return (f"N={m['n_layers']}, d_model={m['d_model']}, h={m['n_heads']}; "
            f"{run['parameters'] / 1e6:.2f}M parameters")


def metric(published: dict) -> str:
    """The published comparison's metric, short: "lowercased tokenized BLEU, greedy"."""
    name, decoding = published["metric"].rsplit(", ", 1)
    name = name.split(" (")[0].replace("Moses-tokenized", "tokenized")
    return f"{name}, {decoding}"


def runs_table() -> list[str]:
    """The recorded runs: what ran, how long, and its scores (README and docs/performance)."""
    rows = ["| run | model | training | sacreBLEU, beam 4 | published metric: ours "
            "(best published from scratch) | perplexity | file |",
            "|---|---|---|---|---|---|---|"]
    for path, run in recorded_runs():
        t, pub = run["training"], run["published"]
        rows.append(
            f"| Multi30k {arrow(run)}, `{run['profile']}` profile | {model(run)} | "
            f"{t['steps']:,} steps in {minutes(t['wall_time'])} on {hardware(run)} | "
            f"{run['bleu']['sacrebleu']:.1f} | {pub['ours']:.1f} ({pub['published']}), "
            f"{metric(pub)} | {run['perplexity']:.1f} | {link(path)} |")
    return rows


def headline() -> list[str]:
    """One sentence per recorded CPU run, for the README's first screen."""
    lines = []
    for _, run in recorded_runs():
        if run["profile"] != "cpu":
            continue
        t, pub = run["training"], run["published"]
        lines.append(
            f"- {arrow(run)}: sacreBLEU {run['bleu']['sacrebleu']:.1f} after "
            f"{minutes(t['wall_time'])} of training on {hardware(run)}; "
            f"{pub['ours']:.1f} in the metric of published Multi30k results ({metric(pub)}), "
            f"where the best from-scratch model scores {pub['published']}.")
    return lines


# ---- benchmarks (results/bench/, bench/*.py) ------------------------------------------------

OURS, OURS16 = "this package", "this package, bfloat16"
REFERENCE = "baseline (before #14)"  # bench/baseline_decoding.py, as bench_decode.py labels it
NO_ONEDNN = "this package, PyTorch's linear layers (TRANSFORMER_ONEDNN=0)"
ALONE = "this package, each batch searched alone (beam_search per batch)"
GRAPHED = "this package, CUDA graph per step"
OURS_LOSS = "label_smoothed_cross_entropy"
SAME = ("Times are compared with this package's in float32. Every output is identical to the "
        "reference decoder's unless a cell counts how many are.")


def seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 0.1 else f"{s:.3f} s" if s < 1 else f"{s:.2f} s"


def versus(s: float, ref: float) -> str:
    """How ``s`` seconds compare with ``ref`` seconds."""
    if f"{max(s, ref) / min(s, ref):.2f}" == "1.00":
        return "as fast"
    return f"{s / ref:.2f}× slower" if s > ref else f"{ref / s:.2f}× faster"


def cpu_hardware(p: dict) -> str:
    cores = f", {p['cores']} cores" if p.get("cores") else ""
    n = p.get("threads")
    threads = f", {n} thread{'s' * (n != 1)}" if n else ""
    return f"{p['cpu']}{cores}{threads}, torch {p['torch']}"


def gpu_hardware(p: dict) -> str:
    cuda = f", CUDA {p['cuda']}" if p.get("cuda") else ""
    return f"one {p['gpu']}{cuda}, torch {p['torch']}"


def test_set_cell(part: dict, name: str) -> str:
    """Time against this package in float32, sacreBLEU, and outputs unlike the reference's."""
    n, same = part["identical_to_baseline"][REFERENCE], part["identical_to_baseline"][name]
    t, ours = part["seconds"][name], part["seconds"][OURS]
    cell = seconds(t) + ("" if name == OURS else f" ({versus(t, ours)})")
    cell += f", BLEU {part['sacrebleu'][name]:.2f}"
    return cell + ("" if same == n else f", {same} of {n} outputs identical")


def cpu_decoding() -> list[str]:
    """Greedy and beam-search decoding on a CPU, against nn.Transformer and the reference."""
    d = load("bench/decode_cpu.json")
    g, b = d["greedy"], d["beam"]
    beam, greedy = b["beam4"], b["greedy"]
    rows = [f"Decoding with the `small` preset ({g['params'] / 1e6:.2f}M parameters) on "
            f"{cpu_hardware(d['provenance'])}; the fastest of {d['repeats']} interleaved rounds. "
            f"*Batch*: {g['batch']} random sources of {g['src_len']} tokens, {g['steps']} output "
            f"tokens each, random weights. *Test set*: Multi30k {b['split']} "
            f"({b['sentences']} sentences, de→en) with a model the benchmark trained "
            f"(`{b['checkpoint']}`), batched as `translate` batches it. {SAME} "
            f"From {link('bench/decode_cpu.json')}.", "",
            "| decoder | greedy, batch | beam 4, test set | greedy, test set |",
            "|---|---|---|---|"]
    names = [(OURS, "this package, float32"), (OURS16, "this package, bfloat16"),
             (NO_ONEDNN, "this package with PyTorch's linear layers (`TRANSFORMER_ONEDNN=0`)"),
             (ALONE, "this package, each batch's beam search alone"),
             (REFERENCE, "reference decoder (`bench/baseline_decoding.py`)"),
             ("torch.nn.Transformer", "`torch.nn.Transformer`, the same weights")]
    for key, label in names:
        cells = []
        if key in g["seconds"]:
            t = g["seconds"][key]
            agree = g["agreement_with_this_package"][key]
            cells.append(seconds(t) + ("" if key == OURS else f" ({versus(t, g['seconds'][OURS])})")
                         + ("" if agree == 1 else f", {agree:.1%} of tokens as float32's"))
        else:
            cells.append("–")
        cells += [test_set_cell(part, key) if key in part["seconds"] else "–"
                  for part in (beam, greedy)]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def cpu_linear() -> list[str]:
    """One linear layer: PyTorch's F.linear against oneDNN with a packed weight."""
    d = load("bench/decode_cpu.json")
    rows = [f"One linear layer of the `small` preset, float32, on {cpu_hardware(d['provenance'])}:"
            " PyTorch's `F.linear` (MKL's SGEMM in PyTorch's CPU builds) against oneDNN with the "
            "weight packed once (`transformer/engine/onednn.py`); the best of 3 runs of 100 calls. "
            f"From {link('bench/decode_cpu.json')}, under `linear`.", "",
            "| rows | layer (inputs × outputs) | PyTorch | oneDNN, packed | oneDNN |",
            "|---|---|---|---|---|"]
    for key, r in d["linear"].items():
        n, layer = key.split(", ", 1)
        name, shape = layer.rsplit(" ", 1)
        torch_, onednn = r["pytorch"], r["onednn"]
        rows.append(f"| {n.split()[0]} | {name} {shape.replace('x', ' × ')} | "
                    f"{torch_['us']:,.0f} µs, "
                    f"{torch_['gflops']:.0f} GFLOP/s | {onednn['us']:,.0f} µs, "
                    f"{onednn['gflops']:.0f} GFLOP/s | "
                    f"{versus(onednn['us'], torch_['us'])} |")
    return rows


def cpu_training() -> list[str]:
    """Training on a CPU: one step against nn.Transformer, the loss, the whole loop."""
    step, loss, engine = (load(f"bench/{n}.json") for n in ("train_cpu", "loss_cpu",
                                                             "engine_cpu"))
    s, b = step["cpu"], step["cpu"]["batch"]
    ours, ref = s["ours"], s["torch"]
    fast, slow = loss["seconds"][OURS_LOSS], loss["seconds"]["F.cross_entropy"]
    last = list(engine["checkouts"].values())[-1]
    e = engine["provenance"]
    return [
        "| measured | this package | against | hardware | file |",
        "|---|---|---|---|---|",
        f"| one training step (forward, backward, Adam), `small` preset, {b['rows']} × "
        f"{b['src_len']} tokens ({b['tgt_tokens']:,} target), {s['precision']}, median of "
        f"{s['steps']} steps | {ours['ms_per_step']:,.0f} ms, {ours['tgt_tokens_per_s']:,.0f} "
        f"target tokens/s | `torch.nn.Transformer` with the same embeddings, loss and Adam: "
        f"{ref['ms_per_step']:,.0f} ms ({versus(ref['ms_per_step'], ours['ms_per_step'])}) | "
        f"{cpu_hardware(step['provenance'])} | {link('bench/train_cpu.json')} |",
        f"| the training loop, `{loss['recipe']}` recipe, {loss['steps']} steps on Multi30k, "
        f"with this package's label-smoothed loss; the faster of "
        f"{len(loss['all_times_s'][OURS_LOSS])} runs | {seconds(fast)} | the same loop with "
        f"`F.cross_entropy(label_smoothing=...)`: {seconds(slow)} ({versus(slow, fast)}), "
        f"final training loss {loss['final_train_loss']['F.cross_entropy']:.3f} against "
        f"{loss['final_train_loss'][OURS_LOSS]:.3f} | {cpu_hardware(loss['provenance'])} | "
        f"{link('bench/loss_cpu.json')} |",
        f"| `train --recipe {e['recipe']} --max-steps {e['steps']}` on Multi30k (batches, "
        f"logging and checks included), median of {e['rounds']} runs | "
        f"{seconds(last['median_wall_time_s'])}, {last['median_tokens_per_s']:,.0f} target "
        f"tokens/s | – | {cpu_hardware(e)} | {link('bench/engine_cpu.json')} |"]


GPU_GREEDY = [("eager", ""), ("`compile=True` (inductor)", "inductor"),
              ('`compile="reduce-overhead"` (inductor, a CUDA graph per decoder call)',
               "inductor, CUDA graph per decoder call"),
              ("`cuda_graph=True` (a CUDA graph per step)", "CUDA graph per step"),
              ("`cuda_graph=True, compile=True`", "inductor, CUDA graph per step")]


def gpu_decoding() -> list[str]:
    """Greedy decoding's variants on a GPU against nn.Transformer."""
    d = load("bench/decode_cuda.json")
    g, p = d["greedy"], d["provenance"]
    t = g["seconds"]
    torch_ = t["torch.nn.Transformer"]

    def cell(key: str) -> str:
        return f"{seconds(t[key])}, {torch_ / t[key]:.2f}×" if key in t else "–"

    rows = [f"Greedy decoding of a batch of {g['batch']} random sources of {g['src_len']} "
            f"tokens, {g['steps']} output tokens each, `small` preset with random weights, on "
            f"{gpu_hardware(p)}. Float32 is true float32 (TF32 off); cuDNN attention is off, as "
            f"`translate` and `evaluate` run. The fastest of {d['repeats']} rounds, each from a "
            "synchronised start to a synchronised end; × is `torch.nn.Transformer`'s float32 "
            "time over the variant's. Every variant gave the same tokens. The first call "
            f"compiles or records a graph. From {link('bench/decode_cuda.json')}.", "",
            "| `greedy_decode(...)` | float32 | bfloat16 | first call, float32 |",
            "|---|---|---|---|"]
    for label, suffix in GPU_GREEDY:
        key = OURS + (f", {suffix}" if suffix else "")
        key16 = OURS16 + (f", {suffix}" if suffix else "")
        rows.append(f"| {label} | {cell(key)} | {cell(key16)} | "
                    f"{seconds(g['first_call_s'][key])} |")
    for key, label in ((REFERENCE, "reference decoder (`bench/baseline_decoding.py`)"),
                       ("torch.nn.Transformer", "`torch.nn.Transformer`, the same weights")):
        rows.append(f"| {label} | {cell(key)} | – | {seconds(g['first_call_s'][key])} |")
    return rows


def gpu_test_set() -> list[str]:
    """Beam search and greedy decoding over Multi30k's test set on a GPU."""
    d = load("bench/decode_cuda.json")
    b = d["beam"]
    rows = [f"Multi30k {b['split']} ({b['sentences']} sentences, de→en), a `small` model the "
            f"benchmark trained (`{b['checkpoint']}`), batched as `translate` batches it, on "
            f"{gpu_hardware(d['provenance'])}. {SAME} From "
            f"{link('bench/decode_cuda.json')}.", "",
            "| | this package, float32 | bfloat16 | `cuda_graph=True` | reference decoder |",
            "|---|---|---|---|---|"]
    for label, part in (("beam 4", b["beam4"]), ("greedy", b["greedy"])):
        cells = [test_set_cell(part, k) if k in part["seconds"] else "–"
                 for k in (OURS, OURS16, GRAPHED, REFERENCE)]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def train_step_row(label: str, relpath: str) -> str:
    r = load(relpath)["cuda"]
    ours, ref = r["ours"], r["torch"]
    return (f"| {label} | {ours['ms_per_step']:.1f} ms, {ours['tgt_tokens_per_s']:,.0f} target "
            f"tokens/s, MFU {ours['mfu']:.1%} | {ref['ms_per_step']:.1f} ms "
            f"({versus(ref['ms_per_step'], ours['ms_per_step'])}), MFU {ref['mfu']:.1%} | "
            f"{link(relpath)} |")


def gpu_training() -> list[str]:
    """One training step of the base model on a GPU, against nn.Transformer, with MFU."""
    d = load("bench/train_gpu.json")
    r, b = d["cuda"], d["cuda"]["batch"]
    peak = r["ours"]["model_tflops"] / r["ours"]["mfu"]
    return [
        f"One training step of the base model ({r['ours']['parameters'] / 1e6:.1f}M parameters"
        f" with a {r['config']['tgt_vocab_size']:,}-token vocabulary) at the paper's batch: "
        f"{b['rows']:,} random pairs of up to {b['src_len']} tokens ({b['tgt_tokens']:,} target "
        f"tokens), {r['precision']}, fused Adam; the median of {r['steps']} steps on "
        f"{gpu_hardware(d['provenance'])}. Against `torch.nn.Transformer` with the same "
        "embeddings, loss and optimizer. MFU is the model's matrix FLOPs per second over the "
        f"GPU's dense bf16 peak from its datasheet ({peak:.0f} TFLOP/s; `PEAK_BF16` in "
        "`bench/bench_train.py`).", "",
        "| step | this package | `torch.nn.Transformer` | file |",
        "|---|---|---|---|",
        train_step_row("eager", "bench/train_gpu.json"),
        train_step_row("both compiled (`--compile`, inductor)", "bench/train_gpu_compiled.json"),
        train_step_row("eager, cuDNN attention on",
                       "gpu-logs/2026-11-30a/bench_train_cudnn_on.json")]


def summary_in(relpath: str) -> dict:
    """The summary ``train`` prints last, read from a log of it."""
    text = (RESULTS / relpath).read_text(encoding="utf-8")
    return json.loads(text[text.index("\n{\n") + 1:])


def gpu_cudnn() -> list[str]:
    """The training loop with cuDNN's attention off (the package's setting) and on."""
    off = summary_in("gpu-logs/2026-11-30a/train_cudnn_off.log")
    on = summary_in("gpu-logs/2026-11-30a/train_cudnn_on.log")
    return [
        f"`train --recipe reproduce-gpu --max-steps {off['steps']}`: the base model on "
        f"Multi30k, batches of up to {off['micro_batch_tokens']:,} tokens, bf16 autocast, on the "
        "same GPU. From `train_cudnn_off.log` and `train_cudnn_on.log` in "
        "[`results/gpu-logs/2026-11-30a/`](results/gpu-logs/2026-11-30a/README.md).", "",
        "| cuDNN attention | training time | target tokens/s |",
        "|---|---|---|",
        f"| off (what the package sets on CUDA) | {seconds(off['wall_time'])} | "
        f"{off['tokens_per_s']:,.0f} |",
        f"| on (PyTorch's default) | {seconds(on['wall_time'])} "
        f"({versus(on['wall_time'], off['wall_time'])}) | {on['tokens_per_s']:,.0f} |"]


def dry_run_time(tokens_per_s: float) -> str:
    """The time line of ``train --recipe base --dataset wmt14 --dry-run`` at that throughput,
    with the corpus not at hand (so that it is the same on every machine)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from transformer.apps.cli import main

    with tempfile.TemporaryDirectory() as empty, contextlib.redirect_stdout(io.StringIO()) as out:
        main(["train", "--recipe", "base", "--dataset", "wmt14", "--src", "en", "--tgt", "de",
              "--data-dir", empty, "--dry-run", "--tokens-per-second", f"{tokens_per_s:.0f}"])
    return next(line for line in out.getvalue().splitlines() if line.startswith("time:"))


def wmt14_hours() -> list[str]:
    """WMT14 base training time on one GPU, projected from the measured training step."""
    rows = ["| measured on one GPU | `train --recipe base --dataset wmt14 --src en --tgt de "
            "--dry-run --tokens-per-second N` |", "|---|---|"]
    for label, relpath in (("eager step", "bench/train_gpu.json"),
                           ("compiled step", "bench/train_gpu_compiled.json")):
        d = load(relpath)
        tps = d["cuda"]["ours"]["tgt_tokens_per_s"]
        rows.append(f"| {label}, {d['provenance']['gpu']}: {tps:,.0f} target tokens/s, "
                    f"{link(relpath)} | `{dry_run_time(tps)}` |")
    return rows



def stored_lines(notebook: str, pattern: str) -> list[str]:
    """The lines of a notebook's stored outputs that match ``pattern``, in order."""
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4)
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    return [line for text in texts for line in text.splitlines() if re.search(pattern, line)]


def notebook_training() -> list[str]:
    """What training in notebooks 06 and 07 took, as their stored outputs print it."""
    rows = ["| notebook | what it trains | as its stored output prints it |", "|---|---|---|"]
    for notebook, what, pattern in [
            ("06_training", "the notebook run (English → German)", r"^trained in [0-9.]+ s"),
            ("06_training", "its twin without label smoothing", r"^twin trained in"),
            ("07_results", "twelve small Table 3 runs", r"^12 runs .* of training in all")]:
        lines = stored_lines(notebook, pattern)
        if len(lines) != 1:
            raise SystemExit(f"error: notebooks/{notebook}.ipynb: expected one line matching "
                             f"{pattern!r} in the stored outputs, found {len(lines)}")
        rows.append(f"| {notebook[:2]} | {what} | `{lines[0].strip()}` |")
    return rows

BLOCKS = {"notebook-training": notebook_training, "runs": runs_table, "headline": headline,
          "cpu-decoding": cpu_decoding, "cpu-linear": cpu_linear, "cpu-training": cpu_training,
          "gpu-decoding": gpu_decoding,
          "gpu-test-set": gpu_test_set, "gpu-training": gpu_training, "gpu-cudnn": gpu_cudnn,
          "wmt14-hours": wmt14_hours}


def pages() -> list[Path]:
    return [p for pattern in PAGES for p in sorted(ROOT.glob(pattern))]


def render(text: str, page: Path) -> str:
    """``text`` of ``page`` with every block rendered, its links made relative to the page."""
    up = Path(os.path.relpath(ROOT, page.parent)).as_posix()

    def block(m: re.Match) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise SystemExit(f"error: {page.relative_to(ROOT)}: unknown rendered block "
                             f"{name!r}; known: {', '.join(BLOCKS)}")
        body = "\n".join(BLOCKS[name]())
        if up != ".":
            body = body.replace("](results/", f"]({up}/results/")
        return m.group(1) + body + "\n" + m.group(4)
    return BLOCK.sub(block, text)


def stale() -> list[str]:
    """``file: block`` for every block whose text differs from its rendering."""
    out = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for old, new in zip(BLOCK.finditer(text), BLOCK.finditer(render(text, page))):
            if old["body"] != new["body"]:
                out.append(f"{page.relative_to(ROOT)}: {old['name']}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = p.parse_args(argv)
    if args.check:
        bad = stale()
        for item in bad:
            print(f"stale: {item} (run python tools/render_docs.py)")
        return 1 if bad else 0
    for page in pages():
        text = page.read_text(encoding="utf-8")
        new = render(text, page)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"rendered {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
