"""Builders shared by several test files (and by the processes that tests spawn), and the
converter to ``torch.nn.Transformer`` that test_model.py checks and bench/bench_decode.py uses."""

from __future__ import annotations

import torch
from torch import nn

from transformer import Transformer, TransformerConfig
from transformer.engine.batch_size import corpus_mean_tokens
from transformer.engine.train import TrainConfig


def small_config(vocab: int, **overrides) -> TransformerConfig:
    """A 2+2-layer model of width 32 over ``vocab`` tokens (dropout 0.1): the model tests' size."""
    fields = dict(src_vocab_size=vocab, tgt_vocab_size=vocab, n_layers=2, d_model=32, d_ff=64,
                  n_heads=4, dropout=0.1, max_len=64)
    return TransformerConfig(**{**fields, **overrides})


# the decoding tests' vocabulary and special ids (the config's defaults; 3 is UNK)
V, PAD, BOS, EOS = 40, 0, 1, 2


def model_and_batch(seed=0, b=3, s=9, **overrides):
    """A ``small_config`` model over ``V`` tokens in eval mode, and a (b, s) batch of sources
    with row 0 padded."""
    torch.manual_seed(seed)
    model = Transformer(small_config(V, **overrides)).eval()
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (b, s), generator=g)
    src[0, 6:] = PAD  # a padded source
    return model, src


def prefixes(n, t, seed=1):
    """(n, t) random target prefixes over ``V`` tokens, each starting with BOS."""
    tgt = torch.randint(4, V, (n, t), generator=torch.Generator().manual_seed(seed))
    tgt[:, 0] = BOS
    return tgt


def stepwise(model, cache, tgt):
    """Feed ``tgt`` (N, T) one position at a time: the logits of every step, (N, T, V)."""
    return torch.stack([model.decode_step(tgt[:, t], cache) for t in range(tgt.size(1))], 1)


def eos_prone_model(seed):
    """``model_and_batch`` with 6 rows and EOS made likely: some rows end early, some run to
    the limit (seeds 1 and 9: 4 of 6 end within 10 to 15 steps)."""
    model, src = model_and_batch(seed, b=6)
    with torch.no_grad():
        model.tgt_embed.weight[EOS] *= 5
    return model, src


def tiny_train_config(run_dir, **fields) -> TrainConfig:
    """A TrainConfig for the tiny preset on the copy task: seconds on one CPU thread, no
    progress bar, no validation and no checkpoint but the last unless ``fields`` ask for
    them."""
    base = dict(dataset="copy", preset="tiny", model={"dropout": 0.0}, max_tokens=1024,
                tokens_per_step=None, warmup=50, lr_scale=0.25, log_every=10, eval_every=None,
                save_every=None, run_dir=str(run_dir), progress=False)
    return TrainConfig(**{**base, **fields})


def tokens_for(dataset, max_tokens: int, micro_batches: int) -> int:
    """The ``tokens_per_step`` that makes one process take ``micro_batches`` micro-batches of
    ``max_tokens`` per step (``batch_size.choose_batch_size``)."""
    return round(micro_batches * corpus_mean_tokens(dataset)(max_tokens))


def copy_into_reference(model: Transformer) -> nn.Transformer:
    """A torch.nn.Transformer holding exactly our weights (batch_first, ReLU)."""
    c = model.config
    ref = nn.Transformer(c.d_model, c.n_heads, c.n_layers, c.n_layers, c.d_ff, dropout=0.0,
                         batch_first=True, norm_first=c.norm_first)

    def attn(dst, src):
        dst.in_proj_weight.copy_(torch.cat([src.w_q.weight, src.w_k.weight, src.w_v.weight]))
        dst.in_proj_bias.copy_(torch.cat([src.w_q.bias, src.w_k.bias, src.w_v.bias]))
        dst.out_proj.load_state_dict(src.w_o.state_dict())

    def ffn(dst, src):
        dst.linear1.load_state_dict(src.ffn.w_1.state_dict())
        dst.linear2.load_state_dict(src.ffn.w_2.state_dict())

    with torch.no_grad():
        for dst, src in zip(ref.encoder.layers, model.encoder):
            attn(dst.self_attn, src.self_attn)
            ffn(dst, src)
            dst.norm1.load_state_dict(src.res_attn.norm.state_dict())
            dst.norm2.load_state_dict(src.res_ffn.norm.state_dict())
        for dst, src in zip(ref.decoder.layers, model.decoder):
            attn(dst.self_attn, src.self_attn)
            attn(dst.multihead_attn, src.cross_attn)
            ffn(dst, src)
            dst.norm1.load_state_dict(src.res_self.norm.state_dict())
            dst.norm2.load_state_dict(src.res_cross.norm.state_dict())
            dst.norm3.load_state_dict(src.res_ffn.norm.state_dict())
        if c.norm_first:
            ref.encoder.norm.load_state_dict(model.encoder_norm.state_dict())
            ref.decoder.norm.load_state_dict(model.decoder_norm.state_dict())
        else:  # the paper's post-norm stacks end with the last layer's own LayerNorm
            ref.encoder.norm = ref.decoder.norm = None
    return ref
