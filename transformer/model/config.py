"""Model configuration: the hyper-parameters of Section 3 and the rows of Table 3.

Field names follow the paper (``n_layers`` is N, ``n_heads`` is h, ``dropout`` is P_drop,
``label_smoothing`` is eps_ls).  ``TransformerConfig.from_preset`` builds the base and big
models of Table 2, every variation of Table 3 (rows A1-A4, B1-B2, C1-C7, D1-D4, E) and a few
small models for CPU work.

Every field is declared with ``option``: its help text and allowed range live beside it, and
serve the command line (``--d-model``'s help), the presets and validation alike.  The
training settings (``transformer.engine.train.TrainConfig``) are declared the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass

POSITIONAL_KINDS = ("sinusoidal", "learned")


# ---------------------------------------------------------------------------------------------
# the schema: a dataclass field that carries its help text and allowed values

def option(default=dataclasses.MISSING, help: str = "", *, low=None, above=None, high=None,
           below=None, choices=None, factory=None, cli: bool = True, zero_is_none: bool = False):
    """A dataclass field with its help text and allowed values in ``metadata``.

    ``low``/``high`` bound the value inclusively, ``above``/``below`` exclusively; ``choices``
    lists the
    allowed values.  ``cli=False`` keeps the field off the command line; ``zero_is_none``: on
    the command line 0 means None ("off").  ``check_options`` enforces all of it.
    """
    meta = dict(help=help, low=low, above=above, high=high, below=below, choices=choices,
                cli=cli, zero_is_none=zero_is_none)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def field_type(cls, name: str) -> tuple[type, bool]:
    """``(type, optional)`` of field ``name`` of dataclass ``cls`` (``int | None`` -> int, True)."""
    tp = _hints(cls)[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args and len(args) < len(typing.get_args(tp)):
        return typing.get_origin(args[0]) or args[0], True
    return typing.get_origin(tp) or tp, False


def allowed(f: dataclasses.Field, tp: type) -> str:
    """What field ``f`` accepts, in words: "an integer >= 1", "a number in [0, 1)"."""
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(map(str, m["choices"]))
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            dict: "a dict"}.get(tp, tp.__name__)
    lower = f"[{m['low']}" if m.get("low") is not None else (
        f"({m['above']}" if m.get("above") is not None else None)
    upper = f"{m['high']}]" if m.get("high") is not None else (
        f"{m['below']})" if m.get("below") is not None else None)
    if lower and upper:
        return f"{kind} in {lower}, {upper}"
    if lower:
        return f"{kind} {'>=' if lower[0] == '[' else '>'} {lower[1:]}"
    if upper:
        return f"{kind} {'<=' if upper[-1] == ']' else '<'} {upper[:-1]}"
    return kind


def check_options(obj) -> None:
    """Raise ``ValueError`` naming the first field of ``obj`` whose value is not allowed,
    with the allowed range in the message."""
    for f in dataclasses.fields(obj):
        if "help" not in f.metadata:
            continue
        value, (tp, optional) = getattr(obj, f.name), field_type(type(obj), f.name)
        if value is None and optional:
            continue
        m = f.metadata
        ok = isinstance(value, tp) and not (tp in (int, float) and isinstance(value, bool))
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if ok and m.get("choices"):
            ok = value in m["choices"]
        if ok and tp in (int, float):
            ok = ((m["low"] is None or value >= m["low"])
                  and (m["above"] is None or value > m["above"])
                  and (m["high"] is None or value <= m["high"])
                  and (m["below"] is None or value < m["below"]))
        if not ok:
            none = " (or None)" if optional else ""
            raise ValueError(f"{f.name} must be {allowed(f, tp)}{none}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# the model's hyper-parameters

@dataclass
class TransformerConfig:
    """Hyper-parameters of one Transformer (Vaswani et al., 2017, Section 3 and Table 3).

    ``d_k`` and ``d_v`` default to ``d_model // n_heads`` (Section 3.2.2); Table 3 rows A-C set
    them independently.  ``share_embeddings`` ties the source embedding, the target embedding
    and the pre-softmax projection (Section 3.4); it needs one shared vocabulary.
    """

    src_vocab_size: int = option(37000, "source vocabulary size", low=1, cli=False)
    tgt_vocab_size: int = option(37000, "target vocabulary size", low=1, cli=False)
    n_layers: int = option(6, "N, layers in each of the encoder and decoder stacks", low=1)
    d_model: int = option(512, "model width d_model", low=1)
    d_ff: int = option(2048, "inner width of the feed-forward network (Section 3.3)", low=1)
    n_heads: int = option(8, "h, attention heads (Section 3.2.2)", low=1)
    d_k: int | None = option(None, "query/key width per head (default: d_model / h)", low=1)
    d_v: int | None = option(None, "value width per head (default: d_model / h)", low=1)
    dropout: float = option(0.1, "P_drop: residual and embedding dropout (Section 5.4)",
                            low=0.0, below=1.0)
    attn_dropout: float = option(0.0, "dropout on attention weights (the paper uses none)",
                                 low=0.0, below=1.0)
    label_smoothing: float = option(0.1, "eps_ls (Section 5.4)", low=0.0, below=1.0)
    positional: str = option("sinusoidal", "positional encoding: sinusoidal, or learned "
                             "(Table 3 row E)", choices=POSITIONAL_KINDS)
    share_embeddings: bool = option(True, "tie the embeddings and the output projection "
                                    "(Section 3.4)")
    norm_first: bool = option(False, "pre-norm (later work) instead of the paper's post-norm")
    max_len: int = option(1024, "longest sequence a learned positional table holds", low=1)
    pad_id: int = option(0, "padding token id", low=0, cli=False)
    bos_id: int = option(1, "begin-of-sentence token id", low=0, cli=False)
    eos_id: int = option(2, "end-of-sentence token id", low=0, cli=False)
    unk_id: int = option(3, "unknown-token id", low=0, cli=False)

    def __post_init__(self) -> None:
        if self.d_k is None:
            self.d_k = self._per_head("d_k")
        if self.d_v is None:
            self.d_v = self._per_head("d_v")
        self.validate()

    def _per_head(self, name: str) -> int:
        if not isinstance(self.n_heads, int) or self.n_heads <= 0:
            raise ValueError(f"n_heads must be an integer >= 1, got {self.n_heads!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"{name}: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                f"set {name} explicitly or choose n_heads dividing d_model"
            )
        return self.d_model // self.n_heads

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range."""
        check_options(self)
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"d_model must be even for sinusoidal positions, got {self.d_model}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs one shared vocabulary: src_vocab_size="
                f"{self.src_vocab_size} != tgt_vocab_size={self.tgt_vocab_size}"
            )
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id,
               "unk_id": self.unk_id}
        for name, value in ids.items():
            if not 0 <= value < min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(f"{name}={value} is outside the vocabulary")
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"special ids must differ, got {ids}")

    def replace(self, **overrides) -> TransformerConfig:
        """A copy with some fields changed; ``d_k``/``d_v`` follow a new ``d_model``/``n_heads``
        unless given."""
        fields = dataclasses.asdict(self)
        if {"d_model", "n_heads"} & overrides.keys():
            fields["d_k"] = fields["d_v"] = None
        unknown = overrides.keys() - fields.keys()
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; valid: {sorted(fields)}")
        fields.update(overrides)
        return TransformerConfig(**fields)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> TransformerConfig:
        unknown = fields.keys() - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}")
        return cls(**fields)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> TransformerConfig:
        """The base/big models, a row of Table 3 (``"A1"`` ... ``"E"``), or a small CPU model."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        fields = {**PRESETS[name], **overrides}
        return cls(**fields)


# Table 3 of the paper: each row changes the base model in the listed fields only.
# Row names are this project's, numbered top to bottom within each group.
PAPER_ROWS: dict[str, dict] = {
    "base": {},
    "A1": dict(n_heads=1, d_k=512, d_v=512),
    "A2": dict(n_heads=4, d_k=128, d_v=128),
    "A3": dict(n_heads=16, d_k=32, d_v=32),
    "A4": dict(n_heads=32, d_k=16, d_v=16),
    "B1": dict(d_k=16),
    "B2": dict(d_k=32),
    "C1": dict(n_layers=2),
    "C2": dict(n_layers=4),
    "C3": dict(n_layers=8),
    "C4": dict(d_model=256, d_k=32, d_v=32),
    "C5": dict(d_model=1024, d_k=128, d_v=128),
    "C6": dict(d_ff=1024),
    "C7": dict(d_ff=4096),
    "D1": dict(dropout=0.0),
    "D2": dict(dropout=0.2),
    "D3": dict(label_smoothing=0.0),
    "D4": dict(label_smoothing=0.2),
    "E": dict(positional="learned"),
    "big": dict(d_model=1024, d_ff=4096, n_heads=16, dropout=0.3),
}

# Small models for CPU work: same architecture, fewer and narrower layers.
SMALL_PRESETS: dict[str, dict] = {
    "tiny": dict(n_layers=2, d_model=64, d_ff=128, n_heads=4, dropout=0.1,
                 src_vocab_size=1000, tgt_vocab_size=1000, max_len=256),
    "small": dict(n_layers=3, d_model=256, d_ff=1024, n_heads=4, dropout=0.1,
                  src_vocab_size=8000, tgt_vocab_size=8000, max_len=256),
}

PRESETS: dict[str, dict] = {**PAPER_ROWS, **SMALL_PRESETS}
