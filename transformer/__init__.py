"""An annotated, runnable reproduction of "Attention Is All You Need" (Vaswani et al., 2017).

The package has three layers, each importing only from those below it:

    transformer/model/   the network of Section 3 (imports nothing else from the package)
    transformer/data/    corpora, BPE vocabulary, token-budget batches (beside the model)
    transformer/engine/  loss, schedule, checkpoints, training, decoding, evaluation
    transformer/apps/    the command line, ``make reproduce``, the notebooks' runs, plots

This module re-exports the public API of the first three.
"""

from .engine.beam_search import beam_search
from .engine.evaluate import evaluate, translate
from .engine.greedy import greedy_decode
from .model import (
    PAPER_ROWS,
    PRESETS,
    DecoderCache,
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    Transformer,
    TransformerConfig,
    causal_mask,
    scaled_dot_product_attention,
    sinusoidal_table,
)

__all__ = [
    "DecoderCache", "DecoderLayer", "EncoderLayer", "FeedForward", "LearnedPositionalEmbedding",
    "MultiHeadAttention", "PAPER_ROWS", "PRESETS", "SinusoidalPositionalEncoding", "Transformer",
    "TransformerConfig", "beam_search", "causal_mask", "evaluate", "greedy_decode",
    "scaled_dot_product_attention", "sinusoidal_table", "translate",
]
