"""An annotated, runnable reproduction of "Attention Is All You Need" (Vaswani et al., 2017)."""

from .attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from .beam_search import beam_search
from .config import PAPER_ROWS, PRESETS, TransformerConfig
from .decoding import greedy_decode
from .feedforward import FeedForward
from .layers import DecoderLayer, EncoderLayer
from .model import DecoderCache, Transformer
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_table
from .translate import evaluate, translate

__all__ = [
    "DecoderCache", "DecoderLayer", "EncoderLayer", "FeedForward", "LearnedPositionalEmbedding",
    "MultiHeadAttention", "PAPER_ROWS", "PRESETS", "SinusoidalPositionalEncoding", "Transformer",
    "TransformerConfig", "beam_search", "causal_mask", "evaluate", "greedy_decode",
    "scaled_dot_product_attention", "sinusoidal_table", "translate",
]
