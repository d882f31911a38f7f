"""CoNLL-2000 chunking with a neural network emitting the energies of a chain, trained end
to end through the PyTorch bridge (:mod:`factorgraph_ebm.torch`).

The energy of a chunk-tag sequence y for a sentence x is (LeCun et al. 2006, "A Tutorial on
Energy-Based Learning", sec. 6; Collobert et al. 2011, "Natural Language Processing (Almost)
from Scratch", sentence-level likelihood)::

    E(y, x) = sum_t U_W(x)[t, y_t] + sum_{t>=1} A[y_{t-1}, y_t] + s[y_0] + e[y_{T-1}]

where U_W(x) (T, K) is a small network: embeddings of the lowercased word (words seen at
least twice in training, others an "unknown" vector), of its POS tag, of its
capitalization pattern and of its last three letters (likewise), concatenated, then two
1-D convolutions over the sentence (window 5, then 3; ReLU; dropout) and a linear layer to
the K = 22 chunk tags of the training set; A, s and e are
learned tables (:class:`~factorgraph_ebm.torch.ChainEnergyModel`). Training runs the
trellis loss of the library in the forward pass (NLL by forward-backward, or the
Hamming-augmented hinge by the most offending incorrect path) and its dL/d(energies) in the
backward pass, for a whole padded mini-batch in one call; autograd does the rest. Decoding
is Viterbi. Embeddings start random: no pretrained vectors, no other data.

Protocol: the CoNLL-2000 training set (8,936 sentences) for training, the test set (2,012)
for the scores, as ``examples/chunking_conll2000.py``; Adam (step 2e-3 decayed to 0 on a
cosine, mini-batches of 32 sentences, ``--epochs``, default 20), seeded. Runs on one
thread.

Usage::

    python examples/neural_chunker.py                    # NLL, 20 epochs
    python examples/neural_chunker.py --losses nll,hinge_hamming --epochs 5
    python examples/neural_chunker.py --quick            # small subset, seconds

Prints a Markdown table, then one JSON line ``{"rows": [{"system", "loss",
"token_accuracy", "chunk_f1", "train_seconds", "epochs", "weights"}, ...]}``, the row format
of ``examples/chunking_conll2000.py`` ("weights": the network's parameters).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover
    sys.exit("examples/neural_chunker.py needs PyTorch: pip install 'factorgraph-ebm[torch]'")

# The chunking example's row and table (run as a script, this folder is on sys.path).
from chunking_conll2000 import markdown, row  # noqa: E402

from factorgraph_ebm.losses import HingeLoss, NLLLoss
from factorgraph_ebm.sequence.datasets import read_conll2000
from factorgraph_ebm.torch import ChainEnergyModel

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2000"
LOSSES = {
    "nll": ("nll (forward-backward)", lambda: NLLLoss(1.0)),
    "hinge_hamming": ("hinge, Hamming-augmented", lambda: HingeLoss(margin=0.0, hamming=1.0)),
}


def shape_of(word: str) -> int:
    """Capitalization pattern: 0 lower or other, 1 Capitalized, 2 ALL CAPS, 3 has a digit."""
    if any(c.isdigit() for c in word):
        return 3
    if word.isupper():
        return 2
    if word[:1].isupper():
        return 1
    return 0


class Vocabulary:
    """Indices of lowercased words and of their last three letters (seen ``min_count``
    times in training; 1 = unknown, 0 = padding), POS tags and chunk tags, from the training
    sentences."""

    def __init__(self, sentences, min_count=2):
        counts = Counter(w.lower() for s in sentences for w in s.words)
        self.words = {w: i + 2 for i, w in enumerate(sorted(w for w, c in counts.items()
                                                             if c >= min_count))}
        self.pos = {p: i + 1 for i, p in enumerate(sorted({p for s in sentences for p in s.pos}))}
        suffixes = Counter(w.lower()[-3:] for s in sentences for w in s.words)
        self.suffixes = {x: i + 2 for i, x in enumerate(sorted(x for x, c in suffixes.items()
                                                                if c >= min_count))}
        self.tags = sorted({t for s in sentences for t in s.chunks})
        self.tag_index = {t: i for i, t in enumerate(self.tags)}

    def encode(self, sentences):
        """Padded int64 arrays (n, T): words, POS, shapes, suffixes, tags, and the
        lengths."""
        lengths = np.array([len(s.words) for s in sentences], dtype=np.int64)
        shape = (len(sentences), int(lengths.max(initial=1)))
        words, pos, shapes, suffixes, tags = (np.zeros(shape, dtype=np.int64) for _ in range(5))
        for i, s in enumerate(sentences):
            n = len(s.words)
            words[i, :n] = [self.words.get(w.lower(), 1) for w in s.words]
            pos[i, :n] = [self.pos.get(p, 0) for p in s.pos]
            shapes[i, :n] = [shape_of(w) for w in s.words]
            suffixes[i, :n] = [self.suffixes.get(w.lower()[-3:], 1) for w in s.words]
            tags[i, :n] = [self.tag_index.get(t, 0) for t in s.chunks]
        return (words, pos, shapes, suffixes), tags, lengths


class Emitter(torch.nn.Module):
    """(words, POS, shapes, suffixes) (B, T) -> unary energies (B, T, K)."""

    def __init__(self, n_words, n_pos, n_suffixes, n_tags, word_dim=64, pos_dim=24,
                 suffix_dim=16, hidden=192, dropout=0.3):
        super().__init__()
        self.word = torch.nn.Embedding(n_words, word_dim, padding_idx=0)
        self.pos = torch.nn.Embedding(n_pos, pos_dim, padding_idx=0)
        self.shape = torch.nn.Embedding(4, 4)
        self.suffix = torch.nn.Embedding(n_suffixes, suffix_dim, padding_idx=0)
        width = word_dim + pos_dim + 4 + suffix_dim
        self.conv1 = torch.nn.Conv1d(width, hidden, 5, padding=2)
        self.conv2 = torch.nn.Conv1d(hidden, hidden, 3, padding=1)
        self.out = torch.nn.Linear(hidden, n_tags)
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, inputs):
        words, pos, shapes, suffixes = (torch.as_tensor(a) for a in inputs)
        x = torch.cat([self.word(words), self.pos(pos), self.shape(shapes),
                       self.suffix(suffixes)], dim=-1)
        h = self.drop(x).transpose(1, 2)                # (B, D, T)
        h = self.drop(torch.relu(self.conv1(h)))
        h = self.drop(torch.relu(self.conv2(h))).transpose(1, 2)
        return self.out(h)                              # (B, T, K)


def train(model, data, epochs, seed, learning_rate=2e-3, batch_size=32):
    """Adam on the mean loss per sentence, its step decayed to 0 on a cosine over the
    epochs; returns the seconds taken."""
    inputs, tags, lengths = data
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(lengths))
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = np.sort(order[start:start + batch_size])
            t = int(lengths[batch].max(initial=1))
            optimizer.zero_grad()
            value = model(tuple(a[batch, :t] for a in inputs), tags[batch, :t],
                          lengths[batch])
            value.mean().backward()
            optimizer.step()
            total += float(value.detach().sum())
        schedule.step()
        print(f"  epoch {epoch + 1}: mean loss {total / len(lengths):.4f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return time.perf_counter() - started


def predict(model, data, vocabulary, batch_size=256):
    """Viterbi chunk tags of every sentence (lists of str)."""
    inputs, _, lengths = data
    model.eval()
    out = []
    for start in range(0, len(lengths), batch_size):
        part = slice(start, start + batch_size)
        t = int(lengths[part].max(initial=1))
        states = model.predict(tuple(a[part, :t] for a in inputs), lengths[part]).numpy()
        out.extend([vocabulary.tags[k] for k in row[:n]] for row, n in
                   zip(states, lengths[part]))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory with train.txt and test.txt (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 training and 300 test sentences, 2 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="default 20 (quick: 2)")
    parser.add_argument("--losses", default="nll",
                        help="comma-separated subset of " + ",".join(LOSSES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.losses.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(LOSSES))
    if unknown:
        parser.error(f"unknown losses {unknown}; choose from {','.join(LOSSES)}")
    torch.set_num_threads(1)

    train_sentences = read_conll2000(args.data / "train.txt")
    test_sentences = read_conll2000(args.data / "test.txt")
    if args.quick:
        train_sentences, test_sentences = train_sentences[:1000], test_sentences[:300]
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 20)
    vocabulary = Vocabulary(train_sentences)
    train_data = vocabulary.encode(train_sentences)
    test_data = vocabulary.encode(test_sentences)
    y_test = [list(s.chunks) for s in test_sentences]
    print(f"CoNLL-2000: {len(train_sentences)} training, {len(test_sentences)} test "
          f"sentences; {len(vocabulary.words)} words, {len(vocabulary.tags)} tags",
          file=sys.stderr)

    rows = []
    for name in chosen:
        label, make_loss = LOSSES[name]
        torch.manual_seed(args.seed)
        emitter = Emitter(len(vocabulary.words) + 2, len(vocabulary.pos) + 1,
                          len(vocabulary.suffixes) + 2, len(vocabulary.tags))
        model = ChainEnergyModel(emitter, len(vocabulary.tags), make_loss(), boundary=True)
        seconds = train(model, train_data, epochs, args.seed)
        predicted = predict(model, test_data, vocabulary)
        weights = sum(p.numel() for p in model.parameters())
        rows.append(row("factorgraph_ebm.torch (conv net)", label, y_test, predicted, seconds,
                        epochs, weights))
        print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr)
    print(markdown(rows))
    report = {"rows": rows}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
