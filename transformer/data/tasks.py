"""Two generated tasks for quick, offline experiments (no download, deterministic in ``seed``).

``copy``: the output is the input, a random sequence of symbols ``0 .. n_symbols-1`` written as
space-separated words.  A model that cannot learn this has a bug.

``numbers``: English number words to German ones, e.g. "three hundred twenty-one" ->
"dreihunderteinundzwanzig".  Small, but a real translation task: German writes units before
tens ("einundzwanzig" = one-and-twenty), so the model must reorder, and it must learn word
formation ("eins" alone, "ein" inside a compound: "einhunderteins", "eintausend").

Both return ``{split: (sources, targets)}`` with splits that share no example.  Every number
below 100 is in ``train`` (they are the building blocks); val and test hold larger numbers, so
they measure whether the model composes what it learnt.
"""

from __future__ import annotations

import random

EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
           "fourteen fifteen sixteen seventeen eighteen nineteen").split()
EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
DE_ONES = ("null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn "
           "vierzehn fünfzehn sechzehn siebzehn achtzehn neunzehn").split()
DE_TENS = ("", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig",
           "neunzig")


def english(n: int) -> str:
    """American English number words: 321 -> "three hundred twenty-one"."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"numbers task covers 0..999999, got {n}")
    if n < 20:
        return EN_ONES[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return EN_TENS[tens] + (f"-{EN_ONES[unit]}" if unit else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{EN_ONES[hundreds]} hundred" + (f" {english(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{english(thousands)} thousand" + (f" {english(rest)}" if rest else "")


def _german_below_100(n: int, final: bool) -> str:
    if n == 1:
        return "eins" if final else "ein"  # "eins", but "einhundert", "eintausend"
    if n < 20:
        return DE_ONES[n]
    tens, unit = divmod(n, 10)
    if unit == 0:
        return DE_TENS[tens]
    return ("ein" if unit == 1 else DE_ONES[unit]) + "und" + DE_TENS[tens]  # units first


def _german_below_1000(n: int, final: bool) -> str:
    hundreds, rest = divmod(n, 100)
    head = (("ein" if hundreds == 1 else DE_ONES[hundreds]) + "hundert") if hundreds else ""
    return head + (_german_below_100(rest, final) if rest else "")


def german(n: int) -> str:
    """German number words, one word below a million: 321 -> "dreihunderteinundzwanzig"."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"numbers task covers 0..999999, got {n}")
    if n == 0:
        return "null"
    thousands, rest = divmod(n, 1000)
    head = _german_below_1000(thousands, final=False) + "tausend" if thousands else ""
    return head + (_german_below_1000(rest, final=True) if rest else "")


def _unique_draws(draw, count: int, taken: set, what: str) -> list:
    """``count`` distinct values from ``draw()`` that are not in ``taken`` (which grows)."""
    out, attempts = [], 0
    while len(out) < count:
        value = draw()
        attempts += 1
        if value not in taken:
            taken.add(value)
            out.append(value)
        elif attempts > 50 * (count + 100):
            raise ValueError(f"cannot draw {count} distinct {what}; ask for fewer examples")
    return out


def copy_task(seed: int = 0, *, n_symbols: int = 10, min_len: int = 3, max_len: int = 12,
              n_train: int = 20000, n_val: int = 500, n_test: int = 500):
    """Random symbol sequences, each its own translation; lengths uniform in [min_len, max_len]."""
    if not 1 <= min_len <= max_len or n_symbols < 2:
        raise ValueError("copy task needs n_symbols >= 2 and 1 <= min_len <= max_len")
    rng = random.Random(seed)

    def draw():
        return " ".join(str(rng.randrange(n_symbols)) for _ in range(rng.randint(min_len,
                                                                                  max_len)))

    lines = _unique_draws(draw, n_test + n_val + n_train, set(), "copy sequences")
    test, val, train = lines[:n_test], lines[n_test:n_test + n_val], lines[n_test + n_val:]
    return {"train": (train, list(train)), "val": (val, list(val)), "test": (test, list(test))}


def numbers_task(seed: int = 0, *, max_value: int = 999_999, n_train: int = 20000,
                 n_val: int = 1000, n_test: int = 1000):
    """English -> German number words.  Val and test hold numbers >= 100 drawn with a uniform
    number of digits (so "four hundred" is as likely as "four hundred thousand")."""
    if not 100 <= max_value < 1_000_000:
        raise ValueError(f"max_value must be in 100..999999, got {max_value}")
    if n_train < 100 or n_train + n_val + n_test > max_value + 1:
        raise ValueError("numbers task needs n_train >= 100 and at most max_value + 1 numbers")
    rng = random.Random(seed)
    max_digits = len(str(max_value))

    def draw():
        digits = rng.randint(3, max_digits)
        return rng.randint(10 ** (digits - 1), min(10 ** digits - 1, max_value))

    drawn = _unique_draws(draw, n_test + n_val + n_train - 100, set(range(100)), "numbers")
    test, val = drawn[:n_test], drawn[n_test:n_test + n_val]
    train = list(range(100)) + drawn[n_test + n_val:]
    rng.shuffle(train)
    return {split: ([english(n) for n in numbers], [german(n) for n in numbers])
            for split, numbers in (("train", train), ("val", val), ("test", test))}
