"""Data: corpora, generated tasks, the shared BPE vocabulary and token-budget batching.

    from transformer.data import load_dataset
    ds = load_dataset("multi30k", "de", "en")        # downloads, verifies, trains BPE once
    for batch in ds.batches("train", max_tokens=4000, epoch=0):
        logits = model(batch.src, batch.tgt_in)       # loss against batch.tgt_out

See data/README.md for sources, licences, the mirror and the cache.
"""

from .batching import Batch, Ragged, filter_pairs, make_batches, padding_fraction
from .corpora import CHECKSUMS, DATASETS, DatasetInfo, register_checksums
from .dataset import TranslationDataset, available_offline, download, download_size, load_dataset
from .fetch import ChecksumError, DataError, DownloadError, resolve_data_dir
from .tokenizer import SubwordTokenizer

__all__ = [
    "Batch", "CHECKSUMS", "ChecksumError", "DATASETS", "DataError", "DatasetInfo",
    "DownloadError", "Ragged", "SubwordTokenizer", "TranslationDataset", "available_offline",
    "download", "download_size", "filter_pairs", "load_dataset", "make_batches", "padding_fraction",
    "register_checksums", "resolve_data_dir",
]
