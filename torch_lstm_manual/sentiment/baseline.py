"""A bag-of-words baseline: logistic regression on word counts.

    python -m torch_lstm_manual.sentiment.baseline        # on the splits of python train.py's built-in corpus

It sees which words a text holds, never their order, so it falls short on the
built-in corpus, whose labels turn on negation and on the clause after "but",
where the LSTM of ``python train.py`` does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bag_of_words_accuracy(train, test, vocabulary, steps: int = 300) -> float:
    """Test accuracy of a logistic regression on word counts, trained full-batch with Adam.

    ``train`` and ``test`` are ``(texts, labels)`` with labels 0/1; the texts are
    whitespace-separated words of ``vocabulary`` (other words are ignored).
    """
    index = {word: i for i, word in enumerate(vocabulary)}

    def counts(texts):  # (N, V)
        pairs = [(row, index[word]) for row, text in enumerate(texts) for word in text.split() if word in index]
        x = torch.zeros(len(texts), len(index))
        if pairs:
            rows, columns = torch.tensor(pairs).T  # (W,), (W,)
            x.index_put_((rows, columns), torch.ones(len(pairs)), accumulate=True)
        return x

    x_train, y_train = counts(train[0]), torch.tensor(train[1], dtype=torch.float)  # (N, V), (N,)
    x_test, y_test = counts(test[0]), torch.tensor(test[1], dtype=torch.float)
    weight = torch.zeros(len(index), requires_grad=True)  # (V,)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(x_train @ weight + bias, y_train).backward()
        optimizer.step()
    with torch.no_grad():
        return ((x_test @ weight + bias > 0).float() == y_test).float().mean().item()


def main() -> None:
    from .data import SyntheticDataModule
    from .data.corpus import corpus_vocabulary

    data = SyntheticDataModule()  # the defaults of python train.py
    texts, labels = data.generate()
    cut_val, cut_test = data.hparams.num_val, data.hparams.num_val + data.hparams.num_test
    train = texts[cut_test:], labels[cut_test:]
    test = texts[cut_val:cut_test], labels[cut_val:cut_test]
    accuracy = bag_of_words_accuracy(train, test, corpus_vocabulary())
    print(f"bag of words, built-in corpus ({len(train[0])} train, {len(test[0])} test): test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
