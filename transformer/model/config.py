"""Model configuration: the hyper-parameters of Section 3 and the rows of Table 3.

Field names follow the paper (``n_layers`` is N, ``n_heads`` is h, ``dropout`` is P_drop,
``label_smoothing`` is eps_ls).  ``TransformerConfig.from_preset`` builds the base and big
models of Table 2, every variation of Table 3 (rows A1-A4, B1-B2, C1-C7, D1-D4, E) and a few
small models for CPU work.

Construction checks every value against ``RULES`` (``check_fields``, which the training
config uses too); the command line's help texts live in ``transformer/apps/options.py``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

POSITIONAL_KINDS = ("sinusoidal", "learned")


# ---------------------------------------------------------------------------------------------
# checking a config's values

KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
         dict: "a dict"}


def check_fields(obj, rules: dict) -> None:
    """Raise ``ValueError`` naming the first field of dataclass ``obj`` whose value has the
    wrong type or breaks its rule in ``rules``: a tuple of allowed values, or a bound written
    as it reads, ``">= 1"``, ``"> 0"`` or ``"in [0, 1)"``.  A field typed ``X | None`` may be
    None."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, tp, rule = getattr(obj, f.name), hints[f.name], rules.get(f.name)
        optional = type(None) in typing.get_args(tp)
        if optional:
            if value is None:
                continue
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if isinstance(value, bool) and tp is not bool:
            ok = False
        else:
            ok = isinstance(value, tp) or (tp is float and isinstance(value, int))
        if ok and rule is not None:
            ok = value in rule if isinstance(rule, tuple) else _within(value, rule)
        if not ok:
            allowed = ("one of " + ", ".join(map(str, rule)) if isinstance(rule, tuple)
                       else f"{KINDS.get(tp, tp.__name__)} {rule or ''}".strip())
            none = " (or None)" if optional else ""
            raise ValueError(f"{f.name} must be {allowed}{none}, got {value!r}")


def _within(value, rule: str) -> bool:
    op, _, bound = rule.partition(" ")
    if op == "in":  # "in [0, 1)": brackets include the bound, parentheses exclude it
        low, high = (float(x) for x in bound[1:-1].split(","))
        return ((value >= low) if bound[0] == "[" else (value > low)) and (
            (value <= high) if bound[-1] == "]" else (value < high))
    return value >= float(bound) if op == ">=" else value > float(bound)


# ---------------------------------------------------------------------------------------------
# the model's hyper-parameters

@dataclass
class TransformerConfig:
    """Hyper-parameters of one Transformer (Vaswani et al., 2017, Section 3 and Table 3).

    ``d_k`` and ``d_v`` default to ``d_model // n_heads`` (Section 3.2.2); Table 3 rows A-C set
    them independently.  ``share_embeddings`` ties the source embedding, the target embedding
    and the pre-softmax projection (Section 3.4); it needs one shared vocabulary.
    """

    src_vocab_size: int = 37000  # source vocabulary (the shared BPE's size when tied)
    tgt_vocab_size: int = 37000
    n_layers: int = 6  # N, layers in each of the encoder and decoder stacks
    d_model: int = 512
    d_ff: int = 2048  # inner width of the feed-forward network (3.3)
    n_heads: int = 8  # h (3.2.2)
    d_k: int | None = None  # query/key width per head; None: d_model / h
    d_v: int | None = None  # value width per head; None: d_model / h
    dropout: float = 0.1  # P_drop: residual and embedding dropout (5.4)
    attn_dropout: float = 0.0  # dropout on attention weights (the paper uses none)
    label_smoothing: float = 0.1  # eps_ls (5.4)
    positional: str = "sinusoidal"  # or "learned" (Table 3 row E)
    share_embeddings: bool = True  # tie both embeddings and the output projection (3.4)
    norm_first: bool = False  # pre-norm (later work) instead of the paper's post-norm
    max_len: int = 1024  # longest sequence a learned positional table holds
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 3

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
        check_fields(self, RULES)
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


RULES = dict(
    src_vocab_size=">= 1", tgt_vocab_size=">= 1", n_layers=">= 1", d_model=">= 1", d_ff=">= 1",
    n_heads=">= 1", d_k=">= 1", d_v=">= 1", dropout="in [0, 1)", attn_dropout="in [0, 1)",
    label_smoothing="in [0, 1)", positional=POSITIONAL_KINDS, max_len=">= 1", pad_id=">= 0",
    bos_id=">= 0", eos_id=">= 0", unk_id=">= 0")

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
