"""Plotting helpers shared by the notebooks: attention heatmaps, an interactive attention chart,
``save_figure`` for slides, and an altair renderer whose charts need no internet.

Attention weights follow the package's convention: row q of a map is query q's distribution over
the keys, so rows are queries (y axis) and columns are keys (x axis). Layers and heads are
numbered from 1 in every label, as in the paper.

Importing this module enables the ``transformer-offline`` altair renderer (unless another
renderer than altair's default was chosen first); see ``enable_offline_charts``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
from pathlib import Path

import altair as alt
import jinja2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _numpy(weights) -> np.ndarray:
    if hasattr(weights, "detach"):
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=float)


def attention_heatmap(weights, keys=None, queries=None, *, title="Attention weights", ax=None,
                      xlabel="key (attended-to token)", ylabel="query (attending token)",
                      cmap="viridis", vmax=None, annotate=False, colorbar=True):
    """Draw one (T_q, T_k) attention matrix with token labels; returns the axes.

    ``keys`` / ``queries`` label the columns / rows (default: positions).  ``annotate`` writes
    each weight in its cell (for small matrices on slides).
    """
    w = _numpy(weights)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * w.shape[1] + 2.5, 0.4 * w.shape[0] + 1.8))
    vmax = vmax if vmax is not None else max(w.max(), 1e-9)
    image = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    if keys is None:
        ax.set_xticks(range(w.shape[1]))
    else:
        ax.set_xticks(range(w.shape[1]), keys, rotation=60, ha="right")
    ax.set_yticks(range(w.shape[0]), queries if queries is not None else range(w.shape[0]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if annotate:
        threshold = 0.6 * vmax
        for (i, j), value in np.ndenumerate(w):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > threshold else "white")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return ax


def attention_chart(maps, keys, queries=None, *, title="Attention weights", size=280):
    """Interactive altair heatmap of ``maps`` (L, h, T_q, T_k) with a layer and a head selector.

    Layers and heads are numbered from 1, as in the paper: the drop-down offers layers
    1..L, the slider heads 1..h, and the tooltip and the title name the map shown with the same
    numbers (``maps[l, i]`` is layer ``l + 1``, head ``i + 1``). Token positions in the axis
    labels are tensor positions, from 0. The chart renders offline (see
    ``enable_offline_charts``); its static image shows layer 1, head 1.
    """
    w = _numpy(maps)
    if w.ndim == 2:
        w = w[None, None]
    n_layers, n_heads, t_q, t_k = w.shape
    queries = keys if queries is None else queries
    key_labels = [f"{j}:{tok}" for j, tok in enumerate(keys)]
    query_labels = [f"{i}:{tok}" for i, tok in enumerate(queries)]
    layer, head, q, k = np.meshgrid(range(1, n_layers + 1), range(1, n_heads + 1), range(t_q),
                                    range(t_k), indexing="ij")
    frame = pd.DataFrame({
        "layer": layer.ravel(), "head": head.ravel(),
        "query": np.array(query_labels)[q.ravel()], "key": np.array(key_labels)[k.ravel()],
        "weight": w.ravel().round(4),
    })
    layer_param = alt.param(name="layer", value=1, bind=alt.binding_select(
        options=list(range(1, n_layers + 1)), name=f"layer (1-{n_layers}) "))
    head_param = alt.param(name="head", value=1, bind=alt.binding_range(
        min=1, max=n_heads, step=1, name=f"head (1-{n_heads}) "))
    # the title's last line names the map shown, updated by the selectors
    lines = [] if not title else [title] if isinstance(title, str) else list(title)
    shown = f"'layer ' + layer + ' of {n_layers}, head ' + head + ' of {n_heads}'"
    text = "[" + ", ".join([json.dumps(str(line)) for line in lines] + [shown]) + "]"
    return (
        alt.Chart(frame, title=alt.TitleParams(text=alt.ExprRef(expr=text)))
        .mark_rect()
        .encode(
            x=alt.X("key:O", sort=key_labels, title="key (attended-to token)"),
            y=alt.Y("query:O", sort=query_labels, title="query (attending token)"),
            color=alt.Color("weight:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"),
                            title="attention weight"),
            tooltip=["layer", "head", "query", "key", "weight"],
        )
        .add_params(layer_param, head_param)
        .transform_filter((alt.datum.layer == layer_param) & (alt.datum.head == head_param))
        .properties(width=size, height=size)
    )


def save_figure(figure, name: str, directory=None, formats=("png", "svg")) -> list[Path]:
    """Save a matplotlib figure (or an altair chart, via vl-convert) for slides.

    Files go to ``directory``, else to ``$TRANSFORMER_FIGURES``; with neither set this does
    nothing and returns ``[]``, so executing a notebook never litters the checkout.
    """
    directory = directory or os.environ.get("TRANSFORMER_FIGURES")
    if not directory:
        return []
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = directory / f"{name}.{fmt}"
        if hasattr(figure, "savefig"):
            figure.savefig(path, dpi=200, bbox_inches="tight")
        else:  # an altair chart
            figure.save(str(path))
        paths.append(path)
    return paths


# -- Charts that render without internet --------------------------------------------------------
#
# altair's default renderer writes HTML that fetches vega, vega-lite and vega-embed from a CDN:
# offline, in a static page and on GitHub the chart is blank. This renderer writes instead:
#
# - a <div> holding the chart's static image (a PNG of its initial state, made by vl-convert,
#   recompressed losslessly by Pillow) as a data: URI, which every viewer shows, including
#   JupyterLab for an untrusted notebook (scripts stripped) and GitHub (which runs no JavaScript);
# - vl-convert's bundle of vega + vega-lite + vega-embed, inline (about 0.9 MB), with the first
#   chart a kernel draws only, so a notebook carries it once;
# - a short script that replaces the image by the interactive chart (vega-embed) as soon as the
#   bundle has run on the page; if it never runs, the image stays;
# - the same PNG as an image/png alternative, for viewers that prefer an image to HTML.
#
# The element id is a hash of the spec (and altair names datasets by a hash of their values), so
# re-executing a notebook reproduces its chart outputs byte for byte.

OFFLINE_RENDERER = "transformer-offline"
_READY_EVENT = "transformer-vega-ready"  # dispatched on window once the bundle has run

_CHART_HTML = """\
<div id="{{ output_div }}" class="transformer-chart">\
<img src="data:image/png;base64,{{ png }}" width="{{ width }}" height="{{ height }}" \
alt="{{ alt | e }}"></div>
{%- if bundle %}
<script type="text/javascript">
// vega, vega-lite {{ vegalite_version }}, vega-embed (vl-convert's javascript_bundle), once a page
if (typeof window.vegaEmbed !== "function") {
(function () {
{{ bundle }}
}).call(window);
}
window.dispatchEvent(new Event("{{ ready_event }}"));
</script>
{%- endif %}
<script type="text/javascript">
(function (spec, embedOpt) {
  var el = document.currentScript ? document.currentScript.previousElementSibling : null;
  while (el && el.id !== "{{ output_div }}") el = el.previousElementSibling;
  el = el || document.getElementById("{{ output_div }}");
  function show() {
    var image = el.innerHTML;  // kept in case the chart fails
    window.vegaEmbed(el, spec, embedOpt).catch(function (error) {
      el.innerHTML = image;
      console.error(error);
    });
  }
  if (typeof window.vegaEmbed === "function") show();
  else window.addEventListener("{{ ready_event }}", show, {once: true});
})({{ spec }}, {{ embed_options }});
</script>
"""

_bundle_carrier: tuple | None = None  # (cell id, request id) of the output that shipped the bundle
_javascript = "once"


@functools.cache
def _javascript_bundle() -> str:
    """vega, vega-lite and vega-embed in one script that defines ``window.vegaEmbed``, for the
    Vega-Lite version altair writes (vl-convert's ``javascript_bundle``)."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    return vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert())


def _recompressed(png: bytes) -> bytes:
    """The same image, losslessly, in about a quarter of the bytes: vl-convert writes its PNGs
    with light compression, Pillow's ``optimize`` compresses them fully."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


def _current_request() -> tuple:
    """(cell id, execute-request id) of the code being run, when in a Jupyter kernel: JupyterLab
    sends the cell id, other clients may not; (None, None) outside a kernel."""
    try:
        from IPython import get_ipython

        parent = get_ipython().kernel.get_parent("shell") or {}
    except Exception:  # not in IPython, or no kernel
        return None, None
    return (parent.get("metadata", {}).get("cellId"),
            parent.get("header", {}).get("msg_id"))


def _ships_bundle() -> bool:
    """Whether this chart carries the JavaScript bundle: always with ``javascript="every"``;
    otherwise the first chart drawn after ``enable_offline_charts``, and again when the cell that
    carried it is run anew (its old output, and the bundle with it, is being replaced)."""
    global _bundle_carrier
    if _javascript == "every":
        return True
    cell, request = _current_request()
    if (_bundle_carrier is None
            or (cell is not None and cell == _bundle_carrier[0] and request != _bundle_carrier[1])):
        _bundle_carrier = (cell, request)
        return True
    return False


def offline_renderer(spec: dict, embed_options: dict | None = None, **_options):
    """altair renderer: a mimebundle that renders without internet (see the comment above).

    Returns ``(data, metadata)`` with ``text/html`` (static image, inline JavaScript when this
    chart carries it, embedding script), ``image/png`` and ``text/plain``.
    """
    from altair.utils.mimebundle import spec_to_mimebundle

    versions = {"mode": "vega-lite", "vega_version": alt.VEGA_VERSION,
                "vegaembed_version": alt.VEGAEMBED_VERSION,
                "vegalite_version": alt.VEGALITE_VERSION}
    # 2 pixels per CSS pixel (sharp on high-density screens), shown at the chart's size
    png_data, png_meta = spec_to_mimebundle(spec, format="png", ppi=144, **versions)
    png = base64.b64encode(_recompressed(png_data["image/png"])).decode("ascii")
    size = png_meta["image/png"]
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
    title = spec.get("title")
    alt_text = ("Static image of an interactive chart (it needs JavaScript)"
                + (f": {title}" if isinstance(title, str) else ""))
    template = jinja2.Environment().from_string(_CHART_HTML, globals={
        "png": png, "width": round(size["width"]), "height": round(size["height"]),
        "alt": alt_text, "ready_event": _READY_EVENT,
        "bundle": _javascript_bundle() if _ships_bundle() else None,
    })
    html = spec_to_mimebundle(spec, format="html", template=template, fullhtml=False,
                              output_div=f"altair-viz-{digest}", embed_options=embed_options,
                              **versions)["text/html"]
    data = {"text/html": html, "image/png": png,
            "text/plain": "<altair chart: interactive where JavaScript runs, else a static image>"}
    return data, {"image/png": {"width": round(size["width"]), "height": round(size["height"])}}


def enable_offline_charts(javascript: str = "once") -> None:
    """Draw altair charts with ``offline_renderer``: interactive without internet (the JavaScript
    travels inline), and a static image wherever scripts do not run (GitHub, untrusted notebooks).

    ``javascript="once"`` ships the 0.9 MB bundle with the first chart drawn after this call
    only, the later charts of the page using it (a notebook then carries it once; a later chart
    viewed without the first shows its static image). ``"every"`` ships it with each chart, for
    viewers that isolate each output (e.g. Colab). Importing this module calls it once.
    """
    global _bundle_carrier, _javascript
    if javascript not in ("once", "every"):
        raise ValueError(f"javascript must be 'once' or 'every', not {javascript!r}")
    _bundle_carrier, _javascript = None, javascript
    alt.renderers.enable(OFFLINE_RENDERER)


alt.renderers.register(OFFLINE_RENDERER, offline_renderer)
if alt.renderers.active == "default":
    enable_offline_charts()
