"""Sentiment of raw texts with a trained checkpoint.

    python -m torch_lstm_manual.predict --ckpt path/to/best.ckpt "a great movie" "boring and dull"
    python -m torch_lstm_manual.predict --ckpt path/to/best.ckpt --file reviews.txt   # one review per line

prints, for each text, the predicted label, its probability and the text. The
tokenizer and label names are the ones the training run saved (``tokenizer.json``,
``labels.json``): next to the checkpoint, or one or two folders above it, or in
``--artifacts``.
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

TOKENIZER_FILE = "tokenizer.json"


class CheckpointError(ValueError):
    """A file that is not a complete, loadable checkpoint of ``SentimentClassifier``."""


@dataclass
class Prediction:
    text: str
    label: str
    probability: float
    probabilities: list[float]


def find_artifacts(ckpt_path: str | os.PathLike, levels: int = 2) -> Path:
    """The folder with the run's ``tokenizer.json``: the checkpoint's own folder,
    else up to ``levels`` folders above it."""
    folder = Path(ckpt_path).resolve().parent
    searched = []
    for _ in range(levels + 1):
        searched.append(str(folder))
        if (folder / TOKENIZER_FILE).is_file():
            return folder
        folder = folder.parent
    raise FileNotFoundError(
        f"no {TOKENIZER_FILE} next to the checkpoint {str(ckpt_path)!r} nor above it (searched {searched}); "
        f"pass the folder the training run saved it in with --artifacts"
    )


def load_model(ckpt_path: str | os.PathLike) -> SentimentClassifier:
    """The classifier of a checkpoint, on the CPU, in eval mode.

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
    return model.eval()


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
        ckpt_path: a checkpoint of ``SentimentClassifier``.
        artifacts: the folder with ``tokenizer.json`` and ``labels.json``; None
            looks next to the checkpoint and up to two folders above.
        batch_size: texts encoded and run at once.

    Raises:
        ValueError: the tokenizer has more tokens than the model's embedding (the
            two come from different runs), or the label names do not match the
            model's number of classes.
    """
    import torch

    from .data import check_vocab_compatible, load_encoder  # the data side, only when predicting

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size!r}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts must hold at least one string, got none")
    model = load_model(ckpt_path)
    encoder = load_encoder(find_artifacts(ckpt_path) if artifacts is None else artifacts)
    check_vocab_compatible(encoder.vocab_size, model.hparams.vocab_size)
    num_classes = model.hparams.num_classes
    names = encoder.class_names or [str(index) for index in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(
            f"labels.json names {len(names)} classes ({names}) but the model has {num_classes}: "
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
        prog="python -m torch_lstm_manual.predict",
        description="Print the sentiment label and its probability for each text.",
    )
    parser.add_argument("texts", nargs="*", help="texts to classify (quote each one)")
    parser.add_argument("--ckpt", required=True, help="checkpoint of a training run (best-*.ckpt or last.ckpt)")
    parser.add_argument("--file", help="a UTF-8 file with one text per line (empty lines are skipped)")
    parser.add_argument("--artifacts", help="folder with tokenizer.json and labels.json (default: found near --ckpt)")
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
