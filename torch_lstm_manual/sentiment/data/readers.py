"""Reading labeled texts from CSV, TSV and JSON Lines files, or from a folder per label.

Each reader returns ``Examples``: the texts, their labels as strings (None where
a file has no label), and where each example came from ("file line 7"), so that
later errors can point at the line. All files are read strictly as UTF-8.

CSV follows RFC 4180: a field in double quotes may hold commas, quotes (doubled)
and line breaks. TSV has no quoting: every line is one row, split at every tab,
and a ``"`` is an ordinary character, so a field cannot hold a tab or a line break.
A row with more or fewer fields than the header is an error, never merged or dropped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .text import read_text_file

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass
class Examples:
    """Texts with their labels (None: unlabeled) and their locations, all the same length."""

    texts: list[str] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    where: list[str] = field(default_factory=list)

    def add(self, text: str, label: str | None, where: str) -> None:
        self.texts.append(text)
        self.labels.append(label)
        self.where.append(where)

    def __len__(self) -> int:
        return len(self.texts)


def detect_format(path: Path, argument: str, format: str | None = None) -> str:
    """``format`` if given, else ``"folder"`` for a folder or the format its extension names."""
    if format is not None:
        if format not in ("csv", "tsv", "jsonl", "folder"):
            raise ValueError(f"format must be one of 'csv', 'tsv', 'jsonl', 'folder' or None, got {format!r}")
        return format
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in FORMATS:
        return FORMATS[path.suffix.lower()]
    raise ValueError(
        f"cannot tell the format of {argument} file {str(path)!r} from its extension {path.suffix!r}: "
        f"name it .csv, .tsv or .jsonl, pass a folder with one subfolder per label, or set format"
    )


def _label(value: object, where: str, label_column: str, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{where}: the label (column {label_column!r}) is missing or empty; every example "
                             f"of a labeled file needs one (label_column={label_column!r})")
        return None
    if isinstance(value, (dict, list)):
        raise ValueError(f"{where}: the label must be a string or a number, got {type(value).__name__}")
    return str(value).strip()


@contextlib.contextmanager
def _field_size_limit(limit: int):
    """Raises ``csv``'s process-wide field size limit (131072 characters by default) to at
    least ``limit`` for the duration, so that a long field is read rather than refused."""
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, limit))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_delimited(path: Path, delimiter: str, text_column: str, label_column: str, required: bool) -> Examples:
    kind = "TSV" if delimiter == "\t" else "CSV"
    content = read_text_file(path)
    # TSV has no quoting: QUOTE_NONE reads a '"' as a character, never as the start of a multi-line field.
    quoting = csv.QUOTE_NONE if kind == "TSV" else csv.QUOTE_MINIMAL
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter, quoting=quoting)
    with _field_size_limit(len(content) + 1):  # no field is longer than the file
        try:
            columns = reader.fieldnames
        except csv.Error as exc:
            raise ValueError(f"{path} line 1: not a valid {kind} header row ({exc})") from exc
        if not columns:
            raise ValueError(f"{path} is empty: it needs a header row with the columns {text_column!r} and "
                             f"{label_column!r}, then one example per row")
        for column, argument, needed in ((text_column, "text_column", True), (label_column, "label_column", required)):
            if needed and column not in columns:
                raise ValueError(f"{path} has no column {column!r} ({argument}); its header row has {columns}. "
                                 f"Pass {argument}= the name of the column")
        examples = Examples()
        try:
            for row in reader:
                where = f"{path} line {reader.line_num}"
                if None in row or None in row.values():  # extra fields go under the key None, missing ones are None
                    count = len(columns) - list(row.values()).count(None) + len(row.get(None, []))
                    hint = ""
                    if kind == "TSV":
                        hint = (" (TSV has no quoting: a field cannot hold a tab; replace the tabs inside texts "
                                "with spaces, or use CSV or JSON Lines)")
                    elif any(value is not None and "\n" in value for value in row.values()):
                        hint = (" (a '\"' that opens a quoted field and is never closed joins the lines after it "
                                "into one field: check the quotes of the rows above)")
                    raise ValueError(f"{where}: expected {len(columns)} fields like the header, got {count}{hint}")
                examples.add(row[text_column], _label(row.get(label_column), where, label_column, required), where)
        except csv.Error as exc:
            raise ValueError(f"{path} line {reader.line_num}: not valid {kind} ({exc})") from exc
    return examples


def _read_jsonl(path: Path, text_column: str, label_column: str, required: bool) -> Examples:
    examples = Examples()
    # split on "\n" only: str.splitlines would also split inside texts at U+0085 or U+2028
    for number, line in enumerate(read_text_file(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg}); each line must be one object like "
                             f'{{"{text_column}": "...", "{label_column}": "..."}}') from exc
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        text = record.get(text_column)
        if not isinstance(text, str):
            raise ValueError(f"{where}: no string field {text_column!r} (text_column); its fields are "
                             f"{sorted(record)}. Pass text_column= the name of the text field")
        examples.add(text, _label(record.get(label_column), where, label_column, required), where)
    return examples


def _read_folder(path: Path, required: bool) -> Examples:
    examples = Examples()
    subfolders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".txt")
    if not subfolders and not required:  # an unlabeled folder of .txt files, for prediction
        for file in loose:
            examples.add(read_text_file(file), None, str(file))
        return examples
    if not subfolders:
        raise ValueError(f"folder {path} has no label subfolders: put each label's .txt files in "
                         f"a subfolder named after the label (for example {path}/pos/1.txt)")
    for folder in subfolders:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".txt")
        if not files:
            raise ValueError(f"label folder {folder} holds no .txt files: add examples or remove the folder")
        for file in files:
            examples.add(read_text_file(file), folder.name, str(file))
    return examples


def read_examples(path: Path, argument: str, format: str | None, text_column: str, label_column: str,
                  required: bool = True) -> Examples:
    """Reads the examples of the file or folder ``path``, given as the argument named ``argument``.

    Args:
        path: a .csv/.tsv/.jsonl file, or a folder with one subfolder of .txt files per label.
        argument: the data module argument that named ``path`` (for error messages).
        format: "csv", "tsv", "jsonl", "folder", or None to tell from ``path``.
        text_column: the column (or JSON field) holding the text.
        label_column: the column (or JSON field) holding the label.
        required: whether every example must have a label (False for prediction).
    """
    if not path.exists():
        raise FileNotFoundError(f"{argument} file {str(path)!r} does not exist: check the path given as {argument}")
    kind = detect_format(path, argument, format)
    if kind != "folder" and path.stat().st_size == 0:
        raise ValueError(f"{argument} file {path} is empty: it needs examples (and, for CSV/TSV, a header row "
                         f"with the columns {text_column!r} and {label_column!r})")
    if kind == "folder":
        examples = _read_folder(path, required)
    elif kind == "jsonl":
        examples = _read_jsonl(path, text_column, label_column, required)
    else:
        examples = _read_delimited(path, "," if kind == "csv" else "\t", text_column, label_column, required)
    if len(examples) == 0:
        raise ValueError(f"{argument} file {path} holds no examples: add at least one")
    return examples
