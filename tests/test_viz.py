"""transformer.apps.viz: the attention chart numbers layers and heads from 1, and its output
renders without internet (inline JavaScript, a static PNG for viewers that run none)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

pytest.importorskip("altair")
pytest.importorskip("vl_convert")

import altair as alt  # noqa: E402

from transformer.apps import viz  # noqa: E402

TOKENS = ["the", "cat", "sat"]
SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc\s*=", re.IGNORECASE)
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    w = rng.random((2, 3, 3, 3))  # (layers, heads, queries, keys)
    return w / w.sum(-1, keepdims=True)


@pytest.fixture
def offline():
    """The offline renderer, reset so that the next chart carries the JavaScript bundle (and
    reset again afterwards, in the default mode)."""
    viz.enable_offline_charts()
    yield
    viz.enable_offline_charts()


def _bundle(chart):
    data, metadata = chart._repr_mimebundle_()
    return data, metadata


def _params(spec):
    return {p["name"]: p for p in spec["params"]}


def test_importing_viz_enables_the_offline_renderer():
    assert viz.OFFLINE_RENDERER in alt.renderers.names()
    assert alt.renderers.active == viz.OFFLINE_RENDERER


def test_selectors_and_tooltip_count_from_one(maps):
    spec = viz.attention_chart(maps, TOKENS).to_dict()
    params = _params(spec)
    assert params["layer"]["value"] == 1 and params["head"]["value"] == 1
    assert params["layer"]["bind"]["options"] == [1, 2]
    assert (params["head"]["bind"]["min"], params["head"]["bind"]["max"]) == (1, 3)
    assert params["layer"]["bind"]["name"].startswith("layer (1-2)")
    assert params["head"]["bind"]["name"].startswith("head (1-3)")
    rows = next(iter(spec["datasets"].values()))
    assert {r["layer"] for r in rows} == {1, 2} and {r["head"] for r in rows} == {1, 2, 3}
    assert [t["field"] for t in spec["encoding"]["tooltip"]][:2] == ["layer", "head"]
    assert "'layer ' + layer" in spec["title"]["text"]["expr"]  # the title names the map shown


def test_layer_and_head_label_the_right_map(maps):
    rows = next(iter(viz.attention_chart(maps, TOKENS).to_dict()["datasets"].values()))
    shown = {(r["query"], r["key"]): r["weight"] for r in rows if (r["layer"], r["head"]) == (2, 3)}
    expected = {(f"{i}:{q}", f"{j}:{k}"): round(maps[1, 2, i, j], 4)
                for i, q in enumerate(TOKENS) for j, k in enumerate(TOKENS)}
    assert shown == pytest.approx(expected)


def test_a_single_map_is_layer_one_head_one():
    spec = viz.attention_chart(np.eye(3), TOKENS).to_dict()
    assert _params(spec)["layer"]["bind"]["options"] == [1]
    assert _params(spec)["head"]["bind"]["max"] == 1


def test_output_needs_no_internet(maps, offline):
    data, metadata = _bundle(viz.attention_chart(maps, TOKENS, title="Three tokens"))
    html = data["text/html"]
    assert not SCRIPT_SRC.search(html), "scripts must be inline, not loaded from a URL"
    assert not REMOTE.search(html)
    assert "cdn.jsdelivr" not in html and "requirejs" not in html
    assert viz._javascript_bundle() in html  # vega, vega-lite and vega-embed, inline
    assert "vegaEmbed(el, spec, embedOpt)" in html
    assert "Three tokens" in html and '"datasets"' in html  # the spec travels with the output
    # the static image, inside the element the interactive chart replaces
    image = re.search(r'<div id="(altair-viz-[0-9a-f]{32})"[^>]*><img src="data:image/png;base64,'
                      r'([A-Za-z0-9+/=]+)"', html)
    assert image, "the chart's div must hold a PNG data: URI"
    assert base64.b64decode(image.group(2)).startswith(PNG_MAGIC)
    # the same PNG as an alternative representation, with its size
    assert base64.b64decode(data["image/png"]).startswith(PNG_MAGIC)
    assert metadata["image/png"]["width"] > 0 and metadata["image/png"]["height"] > 0
    assert data["text/plain"]


def test_bundle_ships_once_until_reenabled(maps, offline):
    first, _ = _bundle(viz.attention_chart(maps, TOKENS))
    second, _ = _bundle(viz.attention_chart(maps[:1], TOKENS))
    bundle = viz._javascript_bundle()
    assert bundle in first["text/html"] and bundle not in second["text/html"]
    assert len(second["text/html"]) < len(first["text/html"]) - 500_000
    # without the bundle, the chart waits for it and keeps its static image meanwhile
    assert viz._READY_EVENT in second["text/html"]
    assert "data:image/png;base64," in second["text/html"]
    viz.enable_offline_charts(javascript="every")
    again, _ = _bundle(viz.attention_chart(maps[:1], TOKENS))
    assert bundle in again["text/html"]
    with pytest.raises(ValueError):
        viz.enable_offline_charts(javascript="sometimes")


def test_output_is_deterministic(maps, offline):
    chart = viz.attention_chart(maps, TOKENS)
    viz.enable_offline_charts()
    a, _ = _bundle(chart)
    viz.enable_offline_charts()
    b, _ = _bundle(chart)
    assert a == b  # element id and dataset names are hashes of the content, not random


def test_rerunning_the_cell_that_carried_the_bundle_ships_it_again(monkeypatch, offline):
    request = ("cell-a", "run-1")  # (cell id, execute request) as JupyterLab sends them
    monkeypatch.setattr(viz, "_current_request", lambda: request)
    assert viz._ships_bundle()
    assert not viz._ships_bundle()  # a second chart of the same run
    request = ("cell-b", "run-2")
    assert not viz._ships_bundle()
    request = ("cell-a", "run-3")  # the carrier's output is being replaced
    assert viz._ships_bundle()
