"""The prediction command on a checkpoint of a tiny training run."""

import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from torch_lstm_manual.sentiment.cli import main as train
from torch_lstm_manual.sentiment.data.text import TextEncoder, encoder_from_state, save_artifacts, tokenizer_from_words
from torch_lstm_manual.sentiment.predict import main, predict

TEXTS = ["the plot was great", "the acting was not good", "the film was dull , but the cast was superb"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The best checkpoint of ``train.py fit`` on a tiny corpus (it carries its tokenizer and labels)."""
    root = tmp_path_factory.mktemp("run")
    args = [
        "fit", "--data.num_train", "128", "--data.num_val", "32", "--data.num_test", "32",
        "--model.embedding_dim", "8", "--model.hidden_size", "8", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
    ]
    with mock.patch.object(sys, "argv", ["train.py", *args]):
        cli = train()
    return Path(cli.trainer.checkpoint_callback.best_model_path)


def carried_encoder(checkpoint):
    """The tokenizer and label names that ``checkpoint`` carries (the data module's state)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["SyntheticDataModule"]
    return encoder_from_state(state, str(checkpoint))


def old_format(checkpoint, folder):
    """``checkpoint`` as the versions that kept the tokenizer beside it wrote it: no data
    module state inside, ``tokenizer.json`` and ``labels.json`` in ``folder``."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    del content["SyntheticDataModule"]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(content, folder / "old.ckpt")
    save_artifacts(folder, carried_encoder(checkpoint))
    return folder / "old.ckpt"


def parse(out):
    rows = [line.split("\t") for line in out.strip().splitlines()]
    return [(label, float(probability), text) for label, probability, text in rows]


def test_texts_on_the_command_line(checkpoint, capsys):
    results = main(["--ckpt", str(checkpoint), *TEXTS])
    rows = parse(capsys.readouterr().out)
    assert [text for _, _, text in rows] == TEXTS
    for (label, probability, _), result in zip(rows, results):
        assert label in ("negative", "positive") and label == result.label
        assert 0.5 <= probability <= 1.0 and probability == pytest.approx(result.probability, abs=1e-4)
        assert sum(result.probabilities) == pytest.approx(1.0)
        assert result.probability == max(result.probabilities)


def test_file_with_one_review_per_line(checkpoint, tmp_path, capsys):
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join([TEXTS[0], "", TEXTS[1], "   ", TEXTS[2]]) + "\n", encoding="utf-8")
    results = main(["--ckpt", str(checkpoint), "--file", str(reviews)])
    assert [r.text for r in results] == TEXTS
    assert len(parse(capsys.readouterr().out)) == 3


def test_predictions_match_the_model_and_ignore_batching(checkpoint):
    """Each text's probabilities are the model's softmax on it alone, whatever else shares its batch."""
    from torch_lstm_manual.sentiment.classifier import SentimentClassifier

    together = predict(TEXTS, checkpoint, batch_size=3)
    model = SentimentClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    encoder = carried_encoder(checkpoint)
    for text, result in zip(TEXTS, together):
        tokens, lengths = encoder([text])
        with torch.no_grad():
            expected = torch.softmax(model(tokens, lengths), dim=-1)[0]
        torch.testing.assert_close(torch.tensor(result.probabilities), expected, rtol=1e-5, atol=1e-6)
    one_by_one = predict(TEXTS, checkpoint, batch_size=1)
    for a, b in zip(together, one_by_one):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def test_the_checkpoint_alone_is_enough(checkpoint, tmp_path, capsys):
    """The tokenizer and label names travel inside the checkpoint: a copy alone in an empty folder predicts."""
    lonely = tmp_path / "a" / "b" / "c" / "model.ckpt"
    lonely.parent.mkdir(parents=True)
    shutil.copy(checkpoint, lonely)
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["model.ckpt"]
    results = main(["--ckpt", str(lonely), *TEXTS])
    assert [label for label, _, _ in parse(capsys.readouterr().out)] == [r.label for r in results]
    assert {r.label for r in results} <= {"negative", "positive"}
    for result, expected in zip(results, predict(TEXTS, checkpoint)):
        assert result.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


def test_a_stray_tokenizer_nearby_is_ignored(checkpoint, tmp_path):
    """tokenizer.json and labels.json of another run beside the checkpoint and above it change nothing."""
    expected = predict(TEXTS, checkpoint)
    run = tmp_path / "version_0" / "checkpoints"
    run.mkdir(parents=True)
    copy = run / checkpoint.name
    shutil.copy(checkpoint, copy)
    model_vocab = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["vocab_size"]
    words = [f"word{i}" for i in range(model_vocab - 2)]  # a tokenizer of the same size, other words
    stray = TextEncoder(tokenizer_from_words(words, max_length=64), ["bad", "good"])
    for folder in (run, run.parent, tmp_path):
        save_artifacts(folder, stray)
    results = predict(TEXTS, copy)
    assert [r.label for r in results] == [r.label for r in expected]
    assert {r.label for r in results} <= {"negative", "positive"}
    for result, reference in zip(results, expected):
        assert result.probabilities == pytest.approx(reference.probabilities, abs=1e-6)


def test_artifacts_for_a_checkpoint_that_carries_its_own_is_an_error(checkpoint, tmp_path, capsys):
    save_artifacts(tmp_path, carried_encoder(checkpoint))
    with pytest.raises(ValueError, match="carries its own tokenizer and label names"):
        predict(TEXTS, checkpoint, artifacts=tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(checkpoint), "--artifacts", str(tmp_path), *TEXTS])
    assert exit_info.value.code == 2 and "leave artifacts out" in capsys.readouterr().err


def test_an_old_checkpoint_needs_its_artifacts_folder(checkpoint, tmp_path, capsys):
    """A checkpoint of the versions that kept the tokenizer beside it: a clear error without
    --artifacts (nothing is searched for), the same predictions with it."""
    old = old_format(checkpoint, tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(old), *TEXTS])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds no tokenizer and label names" in err and "older version" in err and "--artifacts" in err
    results = predict(TEXTS, old, artifacts=tmp_path / "run")
    for result, expected in zip(results, predict(TEXTS, checkpoint)):
        assert result.label == expected.label
        assert result.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


def test_incompatible_vocabulary_is_a_clear_error(checkpoint, tmp_path, capsys):
    """A tokenizer from another run, with more tokens than the model's embedding has rows."""
    model_vocab = torch.load(checkpoint, weights_only=False)["hyper_parameters"]["vocab_size"]
    words = [f"word{i}" for i in range(model_vocab + 10)]
    other = tmp_path / "other_run"
    other.mkdir()
    save_artifacts(other, TextEncoder(tokenizer_from_words(words, max_length=64), ["negative", "positive"]))
    old = old_format(checkpoint, tmp_path / "old_run")  # only a checkpoint without its own tokenizer reads one
    with pytest.raises(ValueError, match="different training runs"):
        predict(TEXTS, old, artifacts=other)
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(old), "--artifacts", str(other), *TEXTS])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"The tokenizer has {model_vocab + 12} tokens but the model's embedding has only {model_vocab}" in err  # + [PAD], [UNK]


def test_label_count_mismatch_is_a_clear_error(checkpoint, tmp_path):
    other = tmp_path / "three_labels"
    other.mkdir()
    old = old_format(checkpoint, tmp_path / "old_run")
    shutil.copy(old.parent / "tokenizer.json", other / "tokenizer.json")
    (other / "labels.json").write_text('{"class_names": ["neg", "neutral", "pos"]}')
    with pytest.raises(ValueError, match="names 3 classes .* but the model has 2"):
        predict(TEXTS, old, artifacts=other)


def test_usage_errors(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(checkpoint)])
    assert exit_info.value.code == 2 and "give texts to classify" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--ckpt", str(tmp_path / "missing.ckpt"), "hello"])
    assert "does not exist" in capsys.readouterr().err


class WritesAFile:
    """Unpickling it would create ``path``: a stand-in for code a checkpoint file can carry."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def with_the_old_weights_only_default(monkeypatch):
    """``torch.load`` as before torch 2.6, where an unset ``weights_only`` meant False."""
    real_load = torch.load

    def load(*args, weights_only=None, **kwargs):
        return real_load(*args, weights_only=False if weights_only is None else weights_only, **kwargs)

    monkeypatch.setattr(torch, "load", load)


def test_a_checkpoint_that_carries_code_is_refused(checkpoint, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "code-ran"
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["hyper_parameters"]["note"] = WritesAFile(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(content, evil)
    save_artifacts(tmp_path, carried_encoder(checkpoint))
    with_the_old_weights_only_default(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(evil), *TEXTS])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(evil) in err and "objects other than tensors and plain data" in err
    assert not marker.exists()


def damaged_checkpoints(checkpoint, folder):
    data = checkpoint.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random": bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.ckpt"
        paths[name].write_bytes(content)
    paths["not a checkpoint"] = folder / "tensors.ckpt"
    torch.save({"weights": torch.zeros(3)}, paths["not a checkpoint"])
    other = torch.load(checkpoint, map_location="cpu", weights_only=True)
    other["state_dict"] = {"layer.weight": torch.zeros(2, 2)}
    paths["another model"] = folder / "another.ckpt"
    torch.save(other, paths["another model"])
    return paths


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty", "the file is empty"),
        ("truncated", "damaged or cut short"),
        ("random", "damaged or not a torch file"),
        ("not a checkpoint", "expected a Lightning checkpoint with 'state_dict' and 'hyper_parameters'"),
        ("another model", "do not fit the model"),
    ],
)
def test_a_damaged_or_foreign_checkpoint_is_a_clear_error(checkpoint, tmp_path, capsys, kind, reason):
    path = damaged_checkpoints(checkpoint, tmp_path)[kind]
    save_artifacts(tmp_path, carried_encoder(checkpoint))
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(path), *TEXTS])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{str(path)!r} is not a valid, complete checkpoint of SentimentClassifier" in line
    assert reason in line


def test_help_does_not_import_the_training_stack():
    """``python -m torch_lstm_manual.sentiment.predict --help`` parses its arguments before importing Lightning."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['predict', '--help']\n"
        "try:\n"
        "    runpy.run_module('torch_lstm_manual.sentiment.predict', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(sorted(name for name in ('torch', 'lightning', 'torchmetrics', 'tokenizers') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert "--ckpt" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
