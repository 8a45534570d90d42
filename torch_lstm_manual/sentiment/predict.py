"""Sentiment of raw texts with a trained checkpoint.

    python -m torch_lstm_manual.sentiment.predict --ckpt path/to/best.ckpt "a great movie" "boring and dull"
    python -m torch_lstm_manual.sentiment.predict --ckpt path/to/best.ckpt --file reviews.txt   # one review per line

prints, for each text, the predicted label, its probability and the text. The
tokenizer and label names are the ones the checkpoint carries (its data module's
state): the checkpoint file is all it needs. Checkpoints written before they
travelled inside it have none; for those, ``--artifacts`` names the folder with the
``tokenizer.json`` and ``labels.json`` their training run saved.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch and Lightning are imported when a model is loaded, not to parse the arguments
    from .classifier import SentimentClassifier

class CheckpointError(ValueError):
    """A file that is not a complete, loadable checkpoint of ``SentimentClassifier``."""


@dataclass
class Prediction:
    text: str
    label: str
    probability: float
    probabilities: list[float]


def load_model(ckpt_path: str | os.PathLike) -> SentimentClassifier:
    """The classifier of a checkpoint, on the CPU, in eval mode (see ``load_checkpoint``)."""
    return load_checkpoint(ckpt_path)[0]


def load_checkpoint(ckpt_path: str | os.PathLike) -> tuple[SentimentClassifier, dict]:
    """The classifier of a checkpoint, on the CPU, in eval mode, and the checkpoint's contents.

    The file is read with ``weights_only=True``: tensors and plain data only, so
    loading never runs code that a file may carry in its pickled objects.

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointError: the file is empty, truncated, not a torch file, holds
            objects other than tensors and plain data, or is not a checkpoint of
            ``SentimentClassifier``.
    """
    import pickle

    import torch

    from .classifier import SentimentClassifier

    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(ckpt_path)!r} does not exist")
    data = path.read_bytes()

    def invalid(what: str) -> CheckpointError:
        return CheckpointError(f"{str(ckpt_path)!r} is not a valid, complete checkpoint of SentimentClassifier: {what}")

    if not data:
        raise invalid("the file is empty")
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if "Unsupported global" in detail:
            raise invalid(
                f"it holds objects other than tensors and plain data, which could run code when loaded, "
                f"and was not loaded ({detail})"
            ) from exc
        raise invalid(f"it cannot be read, the file is damaged or not a torch file ({detail})") from exc
    except Exception as exc:  # a truncated or foreign file: RuntimeError, EOFError, IndexError, ...
        raise invalid(f"it cannot be read, the file is damaged or cut short ({type(exc).__name__}: "
                      f"{_first_line(exc)})") from exc
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict) or not isinstance(
        hparams, dict
    ) or "vocab_size" not in hparams:
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise invalid(f"expected a Lightning checkpoint with 'state_dict' and 'hyper_parameters' (vocab_size, ...), "
                      f"got {found}")
    try:
        model = SentimentClassifier.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:  # other weights, other hyperparameters
        raise invalid(f"its weights or hyperparameters do not fit the model ({type(exc).__name__}: "
                      f"{_first_line(exc)})") from exc
    return model.eval(), checkpoint


def checkpoint_encoder(checkpoint: dict, ckpt_path: str | os.PathLike):
    """The ``TextEncoder`` (tokenizer and label names) that a checkpoint carries in its
    data module's state, or None for a checkpoint written before they travelled inside it."""
    from .data.text import encoder_from_state, is_encoder_state

    found = [(key, value) for key, value in checkpoint.items() if is_encoder_state(value)]
    if not found:
        return None
    if len(found) > 1:
        raise CheckpointError(
            f"{str(ckpt_path)!r} holds the tokenizers of several data modules ({sorted(key for key, _ in found)}): "
            f"it is not a checkpoint of one training run"
        )
    key, state = found[0]
    try:
        return encoder_from_state(state, f"{str(ckpt_path)!r} ({key})")
    except ValueError as exc:
        raise CheckpointError(f"{str(ckpt_path)!r} is not a valid, complete checkpoint of SentimentClassifier: "
                              f"{exc}") from exc


def _unpickler_detail(exc: BaseException) -> str:
    """The reason ``torch.load(weights_only=True)`` gives after its general advice."""
    text, marker = str(exc), "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if lines:
            return lines[0].split(". ")[0]
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def predict(
    texts: Sequence[str],
    ckpt_path: str | os.PathLike,
    artifacts: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> list[Prediction]:
    """The predicted label and class probabilities of each of ``texts``.

    Args:
        texts: raw review texts.
        ckpt_path: a checkpoint of ``SentimentClassifier``; the tokenizer and label
            names are the ones it carries.
        artifacts: only for a checkpoint written before the tokenizer travelled inside
            checkpoints: the folder with the ``tokenizer.json`` and ``labels.json`` its
            training run saved. None for every other checkpoint.
        batch_size: texts encoded and run at once.

    Raises:
        ValueError: ``artifacts`` given for a checkpoint that carries its own tokenizer,
            or missing for one that does not; the tokenizer has more tokens than the
            model's embedding (the two come from different runs), or the label names do
            not match the model's number of classes.
    """
    import torch

    from .data import check_vocab_compatible, load_encoder  # the data side, only when predicting

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size!r}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts must hold at least one string, got none")
    model, checkpoint = load_checkpoint(ckpt_path)
    encoder = checkpoint_encoder(checkpoint, ckpt_path)
    if encoder is not None and artifacts is not None:
        raise ValueError(
            f"artifacts (--artifacts) is only for checkpoints written before the tokenizer travelled inside "
            f"them, got {str(artifacts)!r}; {str(ckpt_path)!r} carries its own tokenizer and label names, "
            f"which are the ones it was trained with: leave artifacts out"
        )
    source = "the checkpoint's data module state"
    if encoder is None:
        source = "labels.json"
        if artifacts is None:
            raise ValueError(
                f"{str(ckpt_path)!r} holds no tokenizer and label names: it was written by an older version of "
                f"torch_lstm_manual, which saved them as tokenizer.json and labels.json in the training run's "
                f"checkpoint folder. Pass that folder with --artifacts (artifacts=)"
            )
        encoder = load_encoder(artifacts)  # an older checkpoint: the side files its run saved
    check_vocab_compatible(encoder.vocab_size, model.hparams.vocab_size)
    num_classes = model.hparams.num_classes
    names = encoder.class_names or [str(index) for index in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(
            f"{source} names {len(names)} classes ({names}) but the model has {num_classes}: "
            f"the labels and the checkpoint come from different training runs"
        )
    results = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            tokens, lengths = encoder(chunk)  # (B, T), (B,)
            probabilities = torch.softmax(model(tokens, lengths), dim=-1)  # (B, C)
            best = probabilities.argmax(dim=-1)  # (B,)
            for text, row, index in zip(chunk, probabilities.tolist(), best.tolist()):
                results.append(Prediction(text, names[index], row[index], row))
    return results


def read_lines(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a UTF-8 file, one review each."""
    from .data.text import read_text_file

    return [line for line in read_text_file(path).splitlines() if line.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torch_lstm_manual.sentiment.predict",
        description="Print the sentiment label and its probability for each text.",
    )
    parser.add_argument("texts", nargs="*", help="texts to classify (quote each one)")
    parser.add_argument("--ckpt", required=True, help="checkpoint of a training run (best-*.ckpt or last.ckpt)")
    parser.add_argument("--file", help="a UTF-8 file with one text per line (empty lines are skipped)")
    parser.add_argument("--artifacts", help="only for checkpoints written before the tokenizer travelled inside them: "
                        "the folder with the tokenizer.json and labels.json of their training run")
    parser.add_argument("--batch_size", type=int, default=64, help="texts run at once (default: 64)")
    return parser


def main(args: Sequence[str] | None = None) -> list[Prediction]:
    parser = build_parser()
    options = parser.parse_args(args)
    texts = list(options.texts)
    try:
        if options.file:
            texts += read_lines(options.file)
        if not texts:
            parser.error("give texts to classify, or --file with one text per line")
        results = predict(texts, options.ckpt, options.artifacts, options.batch_size)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    for result in results:
        print(f"{result.label}\t{result.probability:.4f}\t{result.text}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
