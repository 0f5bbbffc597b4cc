"""translate / evaluate: batching by length, order restored, BLEU and perplexity on a model whose
answer is known (it copies its source), with fake and real (``load_dataset("copy")``) data."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from transformer import Transformer, TransformerConfig, greedy_decode
from transformer.data.batching import token_batches
from transformer.engine.evaluate import evaluate, evaluate_loss, padded_batches, translate
from transformer.engine.runtime import in_dtype

PAD, BOS, EOS, UNK = range(4)
CONFIDENCE = 10.0  # the copy model's logit for the right token; every other logit is 0


class WordTokenizer:
    """Whitespace tokenizer over digits "0".."9" (ids 4..13), following the contract."""

    vocab_size, pad_id, bos_id, eos_id, unk_id = 14, PAD, BOS, EOS, UNK

    def encode(self, text):
        return [4 + int(w) for w in text.split()]

    def decode(self, ids):
        ids = list(ids)
        ids = ids[: ids.index(EOS)] if EOS in ids else ids
        return " ".join(str(i - 4) for i in ids if i >= 4)


class CopyCache:
    """CopyModel's decoder cache: the sources of the sentences still decoded, and the step."""

    static = False

    def __init__(self, src):
        self.src, self.length = src, 0

    def reorder(self, index, sentences=None):
        if sentences is not None:
            self.src = self.src[sentences]


class CopyModel(nn.Module):
    """Predicts source token t at output position t (EOS past the source), with logit 10."""

    def __init__(self, vocab_size=14):
        super().__init__()
        self.config = SimpleNamespace(pad_id=PAD, bos_id=BOS, eos_id=EOS, positional="sinusoidal",
                                      max_len=1024, label_smoothing=0.0)
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(1))  # so that the model has a device

    def encode(self, src):
        return src.float()[:, :, None]  # (B, S, 1): the memory is the source itself

    def padding_mask(self, src):
        return (src != PAD)[:, None, None, :]

    def new_cache(self, memory, src_mask, rows=None, capacity=64, compile=False):
        return CopyCache(memory[:, :, 0].long())

    def project(self, x):  # decode_step's output already is the logits
        return x

    def decode_step(self, tokens, cache, project=True):  # N = B * g rows: g per source sentence
        n, b = tokens.size(0), cache.src.size(0)
        src = torch.cat([cache.src, torch.full((b, 1), PAD)], dim=1)  # room to run past it
        target = src[:, min(cache.length, src.size(1) - 1)].repeat_interleave(n // b)
        cache.length += 1
        target = target.masked_fill(target == PAD, EOS)
        return CONFIDENCE * nn.functional.one_hot(target, self.vocab_size).float()

    def decode(self, tgt_in, memory, src_mask):
        b, t = tgt_in.shape
        src = memory[:, :, 0].long()
        src = torch.cat([src, torch.full((b, t), PAD)], dim=1)  # room to run past it
        target = src[:, :t]
        target = target.masked_fill(target == PAD, EOS)
        return CONFIDENCE * nn.functional.one_hot(target, self.vocab_size).float()

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src), self.padding_mask(src))


def copy_ppl(vocab_size):
    """exp(cross-entropy) when the right token has logit 10 and the others 0."""
    return math.exp(math.log(math.exp(CONFIDENCE) + vocab_size - 1) - CONFIDENCE)


class FakeBatch(SimpleNamespace):
    def to(self, device):
        return self


class FakeDataset:
    """Just enough of the data contract: texts, tokenizer, batches (shuffle=False)."""

    name, src_lang, tgt_lang, splits = "fake", "xx", "de", ("test",)

    def __init__(self, sentences):
        self.tokenizer, self.sentences = WordTokenizer(), sentences

    def texts(self, split):
        return self.sentences, list(self.sentences)

    def batches(self, split, max_tokens, *, shuffle=True, rank=0, world_size=1):
        ids = [self.tokenizer.encode(s) for s in self.sentences]
        out = []
        lengths = [len(x) + 1 for x in ids]
        for rows in token_batches(lengths, None, max_tokens, sorted(range(len(ids)),
                                                                    key=lambda i: -lengths[i])):
            t = max(len(ids[i]) for i in rows) + 1
            src, tgt_in, tgt_out = (torch.full((len(rows), t), PAD) for _ in range(3))
            for r, i in enumerate(rows):
                n = len(ids[i])
                src[r, : n + 1] = tgt_out[r, : n + 1] = torch.tensor(ids[i] + [EOS])
                tgt_in[r, : n + 1] = torch.tensor([BOS] + ids[i])
            out.append(FakeBatch(src=src, tgt_in=tgt_in, tgt_out=tgt_out, indices=rows))
        return out


SENTENCES = ["1 2 3", "4", "5 6 7 8 9 0 1 2", "3 3", "", "9 8 7 6 5"]


def test_padded_batches_cut_longest_first_within_the_budget():
    ids = [[5] * n for n in (3, 9, 1, 4, 4, 7, 2)]
    batches = list(padded_batches(ids, 10, pad_id=0))
    assert sorted(i for b, _ in batches for i in b) == list(range(len(ids)))
    assert all(src.numel() <= 10 and src.shape == (len(b), max(len(ids[i]) for i in b))
               for b, src in batches)
    assert [b for b, _ in batches][0] == [1]  # the longest first
    assert [b for b, _ in padded_batches([[5] * 50], 10, 0)] == [[0]]  # too long: alone
    assert list(padded_batches([], 10, 0)) == []


@pytest.mark.parametrize("beam_size", [1, 4])
def test_translate_restores_order(beam_size):
    out = translate(CopyModel(), WordTokenizer(), SENTENCES, beam_size=beam_size, max_tokens=8)
    assert out == SENTENCES


def test_evaluate_on_fake_dataset():
    result = evaluate(CopyModel(), FakeDataset(SENTENCES[:4]), "test", max_tokens=12,
                      device="cpu", n_samples=2)
    assert result["sacrebleu"] == pytest.approx(100.0)
    assert result["tokenized_bleu"] == pytest.approx(100.0)
    assert result["tokenized_bleu_lc"] == pytest.approx(100.0)
    assert "compound-split" in result["tokenized_bleu_signature"]  # German target
    assert result["sacrebleu_signature"].startswith("nrefs:1|case:mixed")
    # padding ignored (the model predicts EOS there, which would cost a lot), no smoothing
    assert result["perplexity"] == pytest.approx(copy_ppl(14), rel=1e-5)
    assert result["n_ppl_tokens"] == sum(len(s.split()) + 1 for s in SENTENCES[:4])
    assert result["n_sentences"] == 4 and len(result["samples"]) == 2
    assert result["samples"][0] == {"src": "1 2 3", "ref": "1 2 3", "hyp": "1 2 3"}
    # limit: BLEU and perplexity both on the first 3 sentences (batches are length-sorted)
    first3 = evaluate(CopyModel(), FakeDataset(SENTENCES), "test", limit=3, max_tokens=12)
    assert first3["n_sentences"] == 3
    assert first3["n_ppl_tokens"] == sum(len(s.split()) + 1 for s in SENTENCES[:3])


def test_translate_matches_greedy_and_ignores_batching():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.from_preset("tiny", src_vocab_size=14,
                                                      tgt_vocab_size=14)).eval()
    with torch.no_grad():
        model.tgt_embed.weight[EOS] *= 6  # some outputs end early
    tok = WordTokenizer()
    batched = translate(model, tok, SENTENCES, beam_size=1, max_tokens=100)
    for sentence, out in zip(SENTENCES, batched):
        src = torch.tensor([tok.encode(sentence) + [EOS]])
        assert out == tok.decode(greedy_decode(model, src)[0].tolist())
    beams = translate(model, tok, SENTENCES, beam_size=3, max_tokens=100)
    assert beams == [translate(model, tok, [s], beam_size=3)[0] for s in SENTENCES]


def test_cuda_graph_needs_greedy_decoding_on_a_cuda_device(monkeypatch):
    """``translate(cuda_graph=True)`` refuses beam search and a CPU before decoding anything."""
    import transformer.engine.evaluate as evaluate_module

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before refusing")

    monkeypatch.setattr(evaluate_module, "greedy_decode", no_decoding)
    monkeypatch.setattr(evaluate_module, "beam_search_batches", no_decoding)
    model, tok = CopyModel(), WordTokenizer()
    with pytest.raises(ValueError, match="beam search .* is not graphed"):
        translate(model, tok, SENTENCES, beam_size=4, cuda_graph=True)
    with pytest.raises(ValueError, match="needs a CUDA device; decoding runs on cpu"):
        translate(model, tok, SENTENCES, beam_size=1, cuda_graph=True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        evaluate(model, FakeDataset(SENTENCES[:4]), "test", beam_size=1, cuda_graph=True)


def test_evaluate_on_copy_task():
    from transformer import data
    dataset = data.load_dataset("copy")
    model = CopyModel(dataset.tokenizer.vocab_size)
    result = evaluate(model, dataset, "test", beam_size=2, limit=40, max_tokens=500)
    assert result["n_sentences"] == 40
    assert result["sacrebleu"] == pytest.approx(100.0)
    assert result["perplexity"] == pytest.approx(copy_ppl(dataset.tokenizer.vocab_size), rel=1e-5)
    assert evaluate_loss(model, dataset, "val", max_tokens=500)["tokens"] > 0


def test_decoding_in_bfloat16_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.from_preset("tiny", src_vocab_size=14,
                                                      tgt_vocab_size=14)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert in_dtype(model, None) is model and in_dtype(model, "float32") is model
    bf16 = in_dtype(model, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    # the tied embeddings and output projection (Section 3.4) stay one tensor in the copy
    assert bf16.generator is None and model.config.share_embeddings
    assert bf16.src_embed.weight.data_ptr() == bf16.tgt_embed.weight.data_ptr()
    out = translate(model, WordTokenizer(), SENTENCES, beam_size=2, dtype="bfloat16")
    assert len(out) == len(SENTENCES)
    for k, v in model.state_dict().items():  # the caller's float32 model is untouched
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="float32, bfloat16"):
        in_dtype(model, "float16")


def test_evaluate_records_the_decoding_dtype():
    dataset = FakeDataset(SENTENCES[:4])
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.from_preset("tiny", src_vocab_size=14,
                                                      tgt_vocab_size=14))
    fp32 = evaluate(model, dataset, "test", beam_size=1, max_tokens=12)
    bf16 = evaluate(model, dataset, "test", beam_size=1, max_tokens=12, dtype="bfloat16")
    assert (fp32["dtype"], bf16["dtype"]) == ("float32", "bfloat16")
    assert bf16["perplexity"] == fp32["perplexity"]  # scored by the float32 model either way
