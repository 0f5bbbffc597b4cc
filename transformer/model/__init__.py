"""The network of Section 3, one file per concept; it imports nothing from the rest of the package.

    config.py       TransformerConfig and its checks, the Table 3 presets
    attention.py    scaled dot-product and multi-head attention (3.2)
    feedforward.py  position-wise feed-forward network (3.3)
    positional.py   sinusoidal and learned positional encodings (3.5)
    layers.py       encoder and decoder layers: sublayers, residuals, LayerNorm (3.1)
    transformer.py  embeddings, the two stacks, the output projection (3.4)
    cache.py        DecoderCache: what incremental decoding keeps between steps
"""

from .attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from .cache import DecoderCache
from .config import PAPER_ROWS, PRESETS, TransformerConfig
from .feedforward import FeedForward
from .layers import DecoderLayer, EncoderLayer
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_table
from .transformer import Transformer

__all__ = [
    "DecoderCache", "DecoderLayer", "EncoderLayer", "FeedForward", "LearnedPositionalEmbedding",
    "MultiHeadAttention", "PAPER_ROWS", "PRESETS", "SinusoidalPositionalEncoding", "Transformer",
    "TransformerConfig", "causal_mask", "scaled_dot_product_attention", "sinusoidal_table",
]
