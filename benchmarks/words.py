"""Character-level word autoencoder: does it reconstruct words it has never seen?

Word list: the EFF large list shipped inside the `diceware` wheel (7,776 English words,
3-9 letters), or with --words mnemonic the BIP-39 list inside the `mnemonic` wheel
(2,048 words), or with --words rare rarer and longer words (issue 28): from the English
word-frequency file of the `pyspellchecker` wheel (JSON, read as a file), the words of
10-16 letters a-z at the file's lowest count (30,405 words, e.g. leprosarium,
venipuncture, amphictyonies); --rare-pool of them are drawn with the seed. Nothing is
downloaded at run time: `pip install diceware mnemonic` and
`pip install --no-deps pyspellchecker`.

A fixed random split holds out --held-out words; the model trains on the rest for
--max-time seconds. Reported, for training and held-out words:

  exact (EOS)     the word decoded from its embedding, the model choosing the length
  exact (length)  decoded at the true length (`reconstruct`)
  char accuracy   characters right at their position, over the true characters
                  (free-running decode; a missing or extra character counts as wrong)

--augment N adds N pseudo-words spliced from training words (a prefix of one and a
suffix of another) to the training data.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/words.py --train 4000 --max-time 240
    OMP_WAIT_POLICY=PASSIVE python benchmarks/words.py --max-time 420 \\
        --params '{"hidden_size": 256, "latent_dim": 128}'     # issue 3's run
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import numpy as np

RARE_LENGTHS = (10, 16)


def rare_words(counts: dict[str, int]) -> list[str]:
    """The rarer and longer words of a word -> count table: 10-16 letters a-z, at the
    lowest count among them; sorted."""
    words = {w: c for w, c in counts.items()
             if w.isascii() and w.isalpha() and w.islower()
             and RARE_LENGTHS[0] <= len(w) <= RARE_LENGTHS[1]}
    if not words:
        raise SystemExit(f"no word of {RARE_LENGTHS[0]}-{RARE_LENGTHS[1]} letters a-z in "
                         "the frequency table")
    floor = min(words.values())
    return sorted(w for w, c in words.items() if c == floor)


def load_words(name: str) -> list[str]:
    if name == "rare":
        import gzip
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("spellchecker")  # found, not imported
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("--words rare reads the pyspellchecker wheel: "
                             "pip install --no-deps pyspellchecker")
        path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "en.json.gz"
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return rare_words(json.load(f))
    if name == "eff":
        text = resources.files("diceware").joinpath("wordlists/wordlist_en_eff.txt").read_text()
        return [line.split()[-1] for line in text.splitlines() if line.strip()]
    text = resources.files("mnemonic").joinpath("wordlist/english.txt").read_text()
    return [w.strip() for w in text.splitlines() if w.strip()]


def splice(words: list[str], n: int, seed: int) -> list[str]:
    """``n`` pseudo-words: a prefix of one training word joined to a suffix of another,
    3-9 letters. Built from training words only, so the held-out words stay unseen; the
    model learns to copy letters rather than to memorise a lexicon."""
    rng = np.random.default_rng(seed + 1)
    out = []
    while len(out) < n:
        a, b = words[rng.integers(len(words))], words[rng.integers(len(words))]
        w = a[: rng.integers(1, len(a) + 1)] + b[rng.integers(0, len(b)):]
        if 3 <= len(w) <= 9:
            out.append(w)
    return out


def char_accuracy(pred: list[str], true: list[str]) -> float:
    right = sum(sum(a == b for a, b in zip(p, t, strict=False)) for p, t in zip(pred, true,
                                                                                strict=True))
    return right / sum(len(t) for t in true)


def evaluate(ae, words: list[str]) -> dict[str, float]:
    free = ae.vocab_.decode(ae.decode(ae.encode(words)))
    fixed = ae.reconstruct(words)
    return {
        "exact_eos": float(np.mean([a == b for a, b in zip(free, words, strict=True)])),
        "exact_len": float(np.mean([a == b for a, b in zip(fixed, words, strict=True)])),
        "char_acc": char_accuracy(free, words),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--words", choices=["eff", "mnemonic", "rare"], default="eff")
    ap.add_argument("--rare-pool", type=int, default=5000,
                    help="--words rare: draw this many words (held out + train) first")
    ap.add_argument("--held-out", type=int, default=1000)
    ap.add_argument("--train", type=int, default=None,
                    help="train on this many of the other words (default: all; issue 11: 4000)")
    ap.add_argument("--max-time", type=float, default=240.0)
    ap.add_argument("--params", default="{}",
                    help="JSON of SequenceAutoencoder settings besides "
                    "decoder='autoregressive' (default: the library's defaults), e.g. "
                    '\'{"hidden_size": 256, "latent_dim": 128}\' (issue 3\'s model)')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--augment", type=int, default=0,
                    help="add this many spliced pseudo-words to the training data")
    args = ap.parse_args()

    import torch

    import seqae

    if args.threads:
        torch.set_num_threads(args.threads)
    words = load_words(args.words)
    if args.words == "rare":
        pick = np.random.default_rng(args.seed).permutation(len(words))[: args.rare_pool]
        words = [words[i] for i in sorted(pick)]
    perm = np.random.default_rng(args.seed).permutation(len(words))
    held = [words[i] for i in perm[: args.held_out]]
    train = [words[i] for i in perm[args.held_out :]][: args.train]
    params = json.loads(args.params)
    shown = dict(params)
    from quality import model_overrides  # "model.NAME" keys: ModelConfig fields (probes)

    model_overrides(params)
    ae = seqae.SequenceAutoencoder(**{"decoder": "autoregressive", "max_time": args.max_time,
                                      "max_epochs": 10_000, "seed": args.seed, **params})
    start = time.perf_counter()
    ae.fit(train + splice(train, args.augment, args.seed) if args.augment else train)
    fit_s = time.perf_counter() - start
    tr, ho = evaluate(ae, train), evaluate(ae, held)
    print(f"# words={args.words} ({len(train)} train, {len(held)} held out), "
          f"SequenceAutoencoder(decoder='autoregressive', {shown or 'defaults'}), "
          f"{args.augment} spliced pseudo-words; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# trained {len(ae.history_)} epochs in {fit_s:.0f}s "
          f"(max_time {args.max_time:.0f}s)\n")
    print("| words | exact match (EOS) | exact match (true length) | character accuracy |")
    print("|---|---:|---:|---:|")
    for name, r in (("train", tr), ("held out (never seen)", ho)):
        print(f"| {name} | {r['exact_eos']:.3f} | {r['exact_len']:.3f} | {r['char_acc']:.3f} |")
    free = ae.vocab_.decode(ae.decode(ae.encode(held[:12])))
    print("\nheld-out examples: " + ", ".join(f"{w}->{p}" for w, p in zip(held[:12], free,
                                                                          strict=True)))


if __name__ == "__main__":
    main()
