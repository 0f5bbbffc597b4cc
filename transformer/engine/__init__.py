"""The engine: what trains, decodes and evaluates the model, built on ``model`` and ``data``.

    runtime.py      device, torch.distributed, autocast, eval mode, seeds, provenance
    loss.py         label-smoothed cross-entropy (5.4)
    schedule.py     the warm-up learning-rate schedule (5.3)
    batch_size.py   tokens per step, split over ranks and accumulated micro-batches (5.1)
    checkpoint.py   checkpoint files: atomic writes, strict reads, resumption, averaging (6.1)
    rundir.py       a run's config, log, summary, progress bar and lock
    train.py        TrainConfig and the training loop (5)
    greedy.py       greedy decoding
    beam_search.py  beam search with the length penalty (6.1)
    onednn.py       decoding's linear layers through oneDNN with packed weights (CPU)
    bleu.py         sacreBLEU and tokenized BLEU (6.1)
    evaluate.py     loss and perplexity over a split, translation, BLEU: the one evaluation path
"""
