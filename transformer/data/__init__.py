"""Data: corpora, generated tasks, the shared BPE vocabulary and token-budget batching.

    from transformer.data import load_dataset
    ds = load_dataset("multi30k", "de", "en")        # downloads, verifies, trains BPE once
    for batch in ds.batches("train", max_tokens=4000, epoch=0):
        logits = model(batch.src, batch.tgt_in)       # loss against batch.tgt_out

    dataset.py    load_dataset and TranslationDataset: splits, encoding, cached ids, batches
    corpora.py    the registry of datasets, their files and checksums, download()
    fetch.py      downloads: mirror, resume, verification, atomic cache writes
    wmt14.py      WMT14's archives unpacked into parallel text files
    tasks.py      generated tasks (copy, numbers) for tests and quick runs
    tokenizer.py  the shared BPE vocabulary (Section 5.1), trained once and cached
    batching.py   token-budget batches: sorted by length, cut, shuffled, dealt to ranks (5.1)

See data/README.md for sources, licences, the mirror and the cache.
"""

from .batching import Batch, Ragged, filter_pairs, make_batches, padding_fraction
from .corpora import CHECKSUMS, DATASETS, DatasetInfo, register_checksums
from .dataset import TranslationDataset, available_offline, download, download_size, load_dataset
from .fetch import ChecksumError, DataError, DownloadError, WriteError, resolve_data_dir
from .tokenizer import SubwordTokenizer

__all__ = [
    "Batch", "CHECKSUMS", "ChecksumError", "DATASETS", "DataError", "DatasetInfo",
    "DownloadError", "Ragged", "SubwordTokenizer", "TranslationDataset", "available_offline",
    "download", "download_size", "filter_pairs", "load_dataset", "make_batches", "padding_fraction",
    "register_checksums", "resolve_data_dir", "WriteError",
]
