"""TextFilesDataModule: CSV, TSV, JSON Lines and folder inputs, the label mapping, and the errors."""

import csv
import json
import re

import pytest
import torch

from torch_lstm_manual.sentiment.cli import main
from torch_lstm_manual.sentiment.data import TextFilesDataModule, load_encoder

ROWS = [
    ("A good film, truly good.", "pos"),
    ("Bad.<br />Really bad, with \"quotes\"", "neg"),
    ("line one\nline two of a good review", "pos"),
    ("dull and bad\u0085 and long", "neg"),
    ("great fun", "pos"),
    ("awful", "neg"),
    ("good good", "pos"),
    ("bad bad", "neg"),
    ("", "pos"),
    ("superb", "pos"),
]

SPLIT_ROWS = (("train", ROWS), ("val", ROWS[:3]))


def write_delimited(path, rows, delimiter=",", header=("text", "label")):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_tsv(path, lines):
    """TSV as it is written by hand or by a spreadsheet: no quoting, one line per row."""
    path.write_text("".join("\t".join(fields) + "\n" for fields in [("text", "label"), *lines]), encoding="utf-8")
    return str(path)


def write_jsonl(path, rows, text_key="text", label_key="label"):
    lines = [json.dumps({text_key: text, label_key: label}, ensure_ascii=False) for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def write_folder(path, rows):
    for number, (text, label) in enumerate(rows):
        (path / label).mkdir(parents=True, exist_ok=True)
        (path / label / f"{number}.txt").write_text(text, encoding="utf-8")
    return str(path)


def all_examples(data, loader):
    tokens, lengths, labels = zip(*loader)
    return sum(len(x) for x in labels), torch.cat(labels)


def check_module(data, train_count, val_count):
    assert data.num_classes == 2 and data.class_names == ["neg", "pos"]
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set)) == (train_count, val_count)
    for tokens, lengths, labels in data.train_dataloader():
        assert tokens.shape == (len(labels), int(lengths.max())) and (lengths >= 1).all()
        assert set(labels.tolist()) <= {0, 1}
    vocab = data.encoder.tokenizer.get_vocab()
    assert "good" in vocab and "<" not in vocab and "\u2026" in vocab  # cleaned text: <br /> gone, U+0085 -> "…"


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "folder"])
def test_each_format_with_separate_val(tmp_path, kind):
    if kind == "csv":
        train, val = (write_delimited(tmp_path / f"{n}.csv", rows) for n, rows in SPLIT_ROWS)
    elif kind == "tsv":
        one_line = [[(text.replace("\n", " "), label) for text, label in rows] for _, rows in SPLIT_ROWS]
        train, val = (write_tsv(tmp_path / f"{n}.tsv", rows) for (n, _), rows in zip(SPLIT_ROWS, one_line))
    elif kind == "jsonl":
        train, val = (write_jsonl(tmp_path / f"{n}.jsonl", rows) for n, rows in SPLIT_ROWS)
    else:
        train, val = (write_folder(tmp_path / n, rows) for n, rows in SPLIT_ROWS)
    data = TextFilesDataModule(train=train, val=val, batch_size=4)
    check_module(data, train_count=10, val_count=3)
    assert data.val_set.labels.tolist() == ([1, 0, 1] if kind != "folder" else [0, 1, 1])


def test_multiline_csv_text_is_one_example(tmp_path):
    train, val = write_delimited(tmp_path / "t.csv", ROWS), write_delimited(tmp_path / "v.csv", ROWS)
    data = TextFilesDataModule(train=train, val=val)
    data.setup("fit")
    tokens, lengths = data.encoder(["line one\nline two of a good review"])
    third, _ = data.train_set[2]
    assert third.tolist() == tokens[0, : lengths[0]].tolist()


def test_val_carved_from_train_with_a_seed(tmp_path):
    train = write_delimited(tmp_path / "train.csv", ROWS * 5)
    first = TextFilesDataModule(train=train, val_fraction=0.2, seed=1)
    check_module(first, train_count=40, val_count=10)
    again = TextFilesDataModule(train=train, val_fraction=0.2, seed=1)
    again.setup("fit")
    other = TextFilesDataModule(train=train, val_fraction=0.2, seed=2)
    other.setup("fit")
    assert torch.equal(first.val_set.ids, again.val_set.ids)
    assert first.val_set.ids.tolist() != other.val_set.ids.tolist()  # another seed, another split
    assert first.val_set.labels.sum() == 6  # the split keeps the label proportions (30 pos, 20 neg)


def test_label_mapping_saved_and_custom_columns(tmp_path):
    rows = [(f"text number {i}", str(label)) for i, label in enumerate([10, 2, 0, 2, 10, 0] * 2)]
    train = write_jsonl(tmp_path / "train.jsonl", rows, text_key="review", label_key="stars")
    data = TextFilesDataModule(train=train, text_column="review", label_column="stars", val_fraction=0.5)
    assert data.class_names == ["0", "2", "10"]  # integers sort numerically
    data.setup("fit")
    data.save_artifacts(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "labels.json").read_text()) == {"class_names": ["0", "2", "10"]}
    assert load_encoder(tmp_path / "ckpt").class_names == ["0", "2", "10"]


def test_numeric_json_labels_and_explicit_label_order(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t {i}", "label": i % 2}) for i in range(10)), encoding="utf-8")
    data = TextFilesDataModule(train=str(path), labels=["1", "0"])
    assert data.num_classes == 2 and data.class_names == ["1", "0"]
    data.setup("fit")
    assert set(data.train_set.labels.tolist()) == {0, 1}
    with pytest.raises(ValueError, match=r"line 2: unknown label '1'.*labels= are \['0', 'x'\]"):
        TextFilesDataModule(train=str(path), labels=["0", "x"]).setup("fit")


def test_unknown_label_in_val_names_label_file_and_line(tmp_path):
    train = write_delimited(tmp_path / "train.csv", ROWS)
    val = write_delimited(tmp_path / "val.csv", [("fine", "pos"), ("meh", "neutral")])
    with pytest.raises(ValueError, match=r"val\.csv line 3: unknown label 'neutral'.*\['neg', 'pos'\]"):
        TextFilesDataModule(train=train, val=val).setup("fit")
    test = write_jsonl(tmp_path / "test.jsonl", [("fine", "pos"), ("x", "pos"), ("meh", "mixed")])
    data = TextFilesDataModule(train=train, test=test)
    with pytest.raises(ValueError, match=r"test\.jsonl line 3: unknown label 'mixed'"):
        data.setup("test")


def test_test_and_predict_files(tmp_path):
    train = write_delimited(tmp_path / "train.csv", ROWS)
    test = write_delimited(tmp_path / "test.csv", ROWS[:4])
    predict = write_delimited(tmp_path / "predict.csv", [("good", ""), ("bad", "neg"), ("x", "")])
    data = TextFilesDataModule(train=train, test=test, predict=predict, batch_size=2)
    data.setup("test")
    data.setup("predict")
    assert all_examples(data, data.test_dataloader())[0] == 4
    assert all_examples(data, data.predict_dataloader())[1].tolist() == [-1, 0, -1]  # unlabeled: -1, in order
    no_test = TextFilesDataModule(train=train)
    with pytest.raises(ValueError, match="no test file: pass test="):
        no_test.test_dataloader()
    with pytest.raises(RuntimeError, match=r"call setup\('fit'\) first"):
        no_test.train_dataloader()
    with pytest.raises(RuntimeError, match=r"call setup\('fit'\) before save_artifacts"):
        no_test.save_artifacts(tmp_path)


def test_missing_path_names_the_argument(tmp_path):
    train = write_delimited(tmp_path / "train.csv", ROWS)
    with pytest.raises(FileNotFoundError, match=r"train file '.*nope\.csv' does not exist"):
        TextFilesDataModule(train=str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError, match=r"val file '.*missing\.jsonl' does not exist"):
        TextFilesDataModule(train=train, val=str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("content, match", [
    (b"", r"train file .*train\.csv is empty"),
    (b"\n\n", r"train\.csv is empty: it needs a header row"),
    (b"text,label\n", r"train file .*train\.csv holds no examples"),
    (b"words,label\nhello,pos\n", r"no column 'text' \(text_column\).*\['words', 'label'\]"),
    (b"text,label\nhello,\n", r"line 2: the label \(column 'label'\) is missing or empty"),
    (b"text,label\nhello,pos,extra\n", r"line 2: expected 2 fields"),
])
def test_bad_csv_files(tmp_path, content, match):
    (tmp_path / "train.csv").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        TextFilesDataModule(train=str(tmp_path / "train.csv")).setup("fit")


@pytest.mark.parametrize("content, match", [
    (b"", r"is empty"),
    (b'{"text": "a", "label": "x"}\n{"text": "b", "label": \n', r"train\.jsonl line 2: not valid JSON"),
    (b'["a", "x"]\n', r"line 1: expected a JSON object, got list"),
    (b'{"body": "a", "label": "x"}\n', r"line 1: no string field 'text'"),
])
def test_bad_jsonl_files(tmp_path, content, match):
    (tmp_path / "train.jsonl").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        TextFilesDataModule(train=str(tmp_path / "train.jsonl")).setup("fit")


def test_non_utf8_text_names_the_file(tmp_path):
    (tmp_path / "train.csv").write_bytes("text,label\ncaf\u00e9,pos\nbad,neg\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError, match=r"train\.csv: the file is not valid UTF-8"):
        TextFilesDataModule(train=str(tmp_path / "train.csv")).setup("fit")
    folder = tmp_path / "folder"
    write_folder(folder, ROWS)
    (folder / "pos" / "latin.txt").write_bytes("na\u00efve".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError, match=r"latin\.txt: the file is not valid UTF-8"):
        TextFilesDataModule(train=str(folder)).setup("fit")


def test_folder_and_format_errors(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("hello")
    with pytest.raises(ValueError, match="has no label subfolders"):
        TextFilesDataModule(train=str(tmp_path / "flat")).setup("fit")
    (tmp_path / "labels" / "pos").mkdir(parents=True)
    (tmp_path / "labels" / "neg").mkdir()
    (tmp_path / "labels" / "pos" / "a.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"label folder .*neg holds no \.txt files"):
        TextFilesDataModule(train=str(tmp_path / "labels")).setup("fit")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(ValueError, match=r"cannot tell the format of train file .*'\.xlsx'"):
        TextFilesDataModule(train=str(tmp_path / "data.xlsx"))
    single = write_delimited(tmp_path / "one.csv", [("a", "pos"), ("b", "pos")])
    with pytest.raises(ValueError, match="at least 2 classes"):
        TextFilesDataModule(train=single).num_classes


def test_tsv_has_no_quoting(tmp_path):
    lines = [('"Great" said nobody', "neg"), ("fine film", "pos"), ('a "quoted" word', "pos"), ("bad", "neg")]
    data = TextFilesDataModule(train=write_tsv(tmp_path / "train.tsv", lines), val=write_tsv(tmp_path / "v.tsv", lines))
    examples = data._read("train")
    assert examples.texts == [text for text, _ in lines] and examples.labels == [label for _, label in lines]
    data.setup("fit")
    assert len(data.train_set) == 4 and data.train_set.labels.tolist() == [0, 1, 1, 0]


def test_a_tab_inside_a_tsv_field_is_an_error(tmp_path):
    path = write_tsv(tmp_path / "train.tsv", [("fine", "pos"), ("a\ttab", "neg"), ("bad", "neg")])
    with pytest.raises(ValueError, match=r"train\.tsv line 3: expected 2 fields like the header, got 3 "
                                         r"\(TSV has no quoting"):
        TextFilesDataModule(train=path).setup("fit")


def test_csv_field_longer_than_the_csv_module_limit(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters: over csv's default limit of 131,072
    limit = csv.field_size_limit()
    train = write_delimited(tmp_path / "train.csv", [(long_text, "pos"), *ROWS])
    data = TextFilesDataModule(train=train, val=train)
    data.setup("fit")
    assert data._read("train").texts[0] == long_text
    assert csv.field_size_limit() == limit  # the process-wide setting is left as it was


def test_unclosed_csv_quote_is_named(tmp_path):
    (tmp_path / "train.csv").write_text('text,label\n"fine,pos\nbad,neg\nok,pos\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"expected 2 fields like the header, got 1 \(a '\"' that opens a quoted"):
        TextFilesDataModule(train=str(tmp_path / "train.csv")).setup("fit")


@pytest.mark.parametrize("labels, first, second", [
    (["1", "0", "1.0", "0"], "'1' (", "'1.0' ("),
    (["pos", "neg", "Pos", "neg"], "'pos' (", "'Pos' ("),
])
def test_two_spellings_of_one_label_are_an_error(tmp_path, labels, first, second):
    train = write_delimited(tmp_path / "train.csv", [(f"text {i}", label) for i, label in enumerate(labels)])
    with pytest.raises(ValueError, match=rf"train file .*train\.csv spells one label in 2 ways: "
                                         rf"{re.escape(first)}.*line 2\) and {re.escape(second)}.*line 4\)"):
        TextFilesDataModule(train=train).num_classes
    named = TextFilesDataModule(train=train, labels=sorted(set(labels)))  # on purpose: separate classes
    assert named.num_classes == 3


def test_numeric_json_labels_spelled_two_ways(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t {i}", "label": label}) for i, label in enumerate([1, 0, 1.0])))
    with pytest.raises(ValueError, match=r"spells one label in 2 ways: '1' .* and '1\.0'"):
        TextFilesDataModule(train=str(path)).class_names


def test_a_bad_test_file_fails_before_training(tmp_path):
    train = write_delimited(tmp_path / "train.csv", ROWS)
    unseen = write_delimited(tmp_path / "unseen.csv", [("fine", "pos"), ("meh", "neutral")])
    data = TextFilesDataModule(train=train, test=unseen)
    with pytest.raises(ValueError, match=r"unseen\.csv line 3: unknown label 'neutral'.*\['neg', 'pos'\]"):
        data.setup("fit")
    respelled = write_delimited(tmp_path / "respelled.csv", [("fine", "pos"), ("awful", "Neg")])
    with pytest.raises(ValueError, match=r"respelled\.csv line 3: unknown label 'Neg'.*another spelling of 'neg'"):
        TextFilesDataModule(train=train, test=respelled).setup("fit")
    broken = tmp_path / "broken.tsv"
    broken.write_text("text\tlabel\nfine\tpos\ttoo many\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.tsv line 2: expected 2 fields"):
        TextFilesDataModule(train=train, test=str(broken)).setup("fit")


def test_has_test_data(tmp_path):
    train = write_delimited(tmp_path / "train.csv", ROWS)
    assert not TextFilesDataModule(train=train).has_test_data
    assert TextFilesDataModule(train=train, test=train).has_test_data


def test_a_huge_word_stays_out_of_the_vocabulary(tmp_path):
    huge = "x" * 5000
    rows = [(f"{huge} good", "pos"), (f"{huge} bad", "neg")] * 3
    train = write_delimited(tmp_path / "train.csv", rows)
    data = TextFilesDataModule(train=train, val=train)
    data.setup("fit")
    vocab = data.encoder.tokenizer.get_vocab()
    assert huge not in vocab and max(len(token) for token in vocab) <= 100
    assert data.encoder.encode_ids([huge])[0] == [data.encoder.tokenizer.token_to_id("[UNK]")]
    data.save_artifacts(tmp_path / "ckpt")
    assert huge not in (tmp_path / "ckpt" / "tokenizer.json").read_text(encoding="utf-8")
    raised = TextFilesDataModule(train=train, val=train, max_token_length=5000)
    raised.setup("fit")
    assert huge in raised.encoder.tokenizer.get_vocab()
    with pytest.raises(ValueError, match="max_token_length must be at least 1, got 0"):
        TextFilesDataModule(train=train, max_token_length=0)


def test_train_without_test_data_skips_the_test_stage(tmp_path, capsys):
    train = write_delimited(tmp_path / "train.csv", ROWS * 4)
    cli = main([
        "--data", "TextFilesDataModule", "--data.train", train, "--data.batch_size", "8",
        "--model.embedding_dim", "8", "--model.hidden_size", "8", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(tmp_path / "runs"),
    ])
    assert cli.trainer.current_epoch == 1  # it trained
    assert "No test data (TextFilesDataModule was given none): skipping the test stage" in capsys.readouterr().out
