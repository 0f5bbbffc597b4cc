"""Plotting helpers shared by the notebooks: attention heatmaps, an interactive attention chart,
and ``save_figure`` for slides.

Attention weights follow the package's convention: row q of a map is query q's distribution over
the keys, so rows are queries (y axis) and columns are keys (x axis).
"""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
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

    The selectors are altair parameters bound to a dropdown (layer) and a slider (head); the
    tooltip shows the query token, the key token and the weight.
    """
    w = _numpy(maps)
    if w.ndim == 2:
        w = w[None, None]
    n_layers, n_heads, t_q, t_k = w.shape
    queries = keys if queries is None else queries
    key_labels = [f"{j}:{tok}" for j, tok in enumerate(keys)]
    query_labels = [f"{i}:{tok}" for i, tok in enumerate(queries)]
    layer, head, q, k = np.meshgrid(range(n_layers), range(n_heads), range(t_q), range(t_k),
                                    indexing="ij")
    frame = pd.DataFrame({
        "layer": layer.ravel(), "head": head.ravel(),
        "query": np.array(query_labels)[q.ravel()], "key": np.array(key_labels)[k.ravel()],
        "weight": w.ravel().round(4),
    })
    layer_param = alt.param(name="layer", value=0, bind=alt.binding_select(
        options=list(range(n_layers)), name="layer "))
    head_param = alt.param(name="head", value=0, bind=alt.binding_range(
        min=0, max=n_heads - 1, step=1, name="head "))
    return (
        alt.Chart(frame, title=title)
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
