"""The tokenizer and label names travel inside the checkpoint: ``train.py test
--ckpt_path`` encodes the data with the checkpoint's own tokenizer, never one
rebuilt from the data, and refuses a checkpoint that holds none."""

import sys
from unittest import mock

import pytest
import torch

from torch_lstm_manual.sentiment.cli import main
from torch_lstm_manual.sentiment.data import TextFilesDataModule


def run_train(*args):
    """``python train.py *args``, in this process."""
    with mock.patch.object(sys, "argv", ["train.py", *args]):
        return main()


SENTIMENT_WORDS = {"0": ["dull", "awful", "boring", "weak"], "1": ["great", "superb", "lovely", "moving"]}
FILLER_WORDS = ["the", "film", "plot", "cast", "was", "and", "a", "story"]


def write_reviews(path, count, seed):
    """A CSV of ``count`` short reviews whose one sentiment word decides the label."""
    import random

    rng = random.Random(seed)
    rows = ["text,label"]
    for i in range(count):
        label = str(i % 2)
        words = [rng.choice(FILLER_WORDS) for _ in range(6)]
        words.insert(rng.randrange(7), rng.choice(SENTIMENT_WORDS[label]))
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_reordered_reviews(path):
    """A CSV with the same words and labels as ``write_reviews``'s, in other frequencies: the
    tokenizer trained on it has the same size but gives the words other ids."""
    words = SENTIMENT_WORDS["0"] + SENTIMENT_WORDS["1"] + FILLER_WORDS  # most frequent first
    rows = ["text,label"]
    for rank, word in enumerate(words):
        for label in ("0", "1"):
            rows.append(f"{' '.join([word] * (len(words) - rank))},{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


TEXT_FILES = [
    "--data", "TextFilesDataModule", "--data.batch_size", "16", "--model.embedding_dim", "8",
    "--model.hidden_size", "8", "--model.pooling", "max", "--model.lr", "0.02",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--trainer.deterministic", "true",
]


@pytest.fixture(scope="module")
def text_files_run(tmp_path_factory):
    """``python train.py`` (fit, then test) on CSV files, and the files."""
    root = tmp_path_factory.mktemp("text_files")
    write_reviews(root / "train.csv", 240, seed=0)
    write_reviews(root / "test.csv", 64, seed=1)
    write_reordered_reviews(root / "other_train.csv")
    cli = run_train(*TEXT_FILES, "--data.train", str(root / "train.csv"), "--data.test", str(root / "test.csv"),
                    "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(root / "runs"))
    return cli, root


def test_a_checkpoint_is_tested_with_its_own_tokenizer(text_files_run, tmp_path):
    """``train.py test --ckpt_path`` with a data module whose training file builds another tokenizer
    of the same size: the checkpoint's tokenizer and labels are used, and the accuracy is the fit run's."""
    fitted, root = text_files_run
    fit_accuracy = fitted.trainer.callback_metrics["test_acc"].item()
    best = fitted.trainer.checkpoint_callback.best_model_path
    assert fit_accuracy > 0.75  # it learned: another tokenizer would show
    args = [*TEXT_FILES, "--data.train", str(root / "other_train.csv"), "--data.test", str(root / "test.csv")]
    own = TextFilesDataModule(train=str(root / "other_train.csv"))
    own.setup("fit")
    trained_with = fitted.datamodule.encoder
    assert own.encoder.vocab_size == trained_with.vocab_size
    assert own.encoder.encode_ids(["great"]) != trained_with.encode_ids(["great"])  # the ids differ

    tested = run_train("test", *args, "--ckpt_path", best, "--trainer.default_root_dir", str(tmp_path))
    assert tested.datamodule.encoder.tokenizer.to_str() == trained_with.tokenizer.to_str()
    assert tested.datamodule.class_names == fitted.datamodule.class_names
    assert tested.trainer.callback_metrics["test_acc"].item() == fit_accuracy


def test_a_checkpoint_without_its_tokenizer_is_refused(text_files_run, tmp_path):
    """A checkpoint of the versions that kept the tokenizer beside it (no data module state):
    ``train.py test`` says so instead of testing with a rebuilt tokenizer."""
    fitted, root = text_files_run
    content = torch.load(fitted.trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)
    del content["TextFilesDataModule"]
    old = tmp_path / "old.ckpt"
    torch.save(content, old)
    args = [*TEXT_FILES, "--data.train", str(root / "train.csv"), "--data.test", str(root / "test.csv")]
    with pytest.raises(RuntimeError, match="holds no tokenizer and label names of TextFilesDataModule.*older version"):
        run_train("test", *args, "--ckpt_path", str(old), "--trainer.default_root_dir", str(tmp_path))
