"""The package's layout: imports flow one way (no cycles, not even through
imports inside functions), and the LSTM module loads none of the
application's dependencies."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import torch_lstm_manual

ROOT = Path(torch_lstm_manual.__file__).parent
PACKAGE = "torch_lstm_manual"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict:
    """Module -> the package's modules it imports anywhere in its source
    (``from . import x`` counts as importing ``x`` where that is a module)."""
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:  # ``a.b.c`` of a function c in module a.b
                    target = target.rpartition(".")[0]
                if target and target.startswith(PACKAGE) and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict):
    """A list of modules that import each other in a circle, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_import_graph_reads_relative_imports():
    graph = import_graph()
    assert "torch_lstm_manual.functional" in graph["torch_lstm_manual.lstm"]
    assert "torch_lstm_manual.native" in graph["torch_lstm_manual.backends.native"]
    assert "torch_lstm_manual.backends.loops" in graph["torch_lstm_manual.backends"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_have_no_cycle():
    assert find_cycle(import_graph()) is None


def test_core_layers_import_downwards_only():
    """The core's layers, top to bottom; each imports only from below it."""
    layers = [
        ["convert"],
        ["lstm", "cell"],
        ["functional", "cell_function"],
        ["backends"],
        ["backends.native", "backends.inplace"],
        ["backends.loops"],
        ["native"],
        ["reference"],
        ["packing", "layer", "variants", "inputs"],
    ]
    rank = {f"{PACKAGE}.{m}": k for k, names in enumerate(layers) for m in names}
    graph = import_graph()
    for module, k in rank.items():
        for target in graph[module]:
            assert target in rank and rank[target] > k, f"{module} imports {target}"


def test_lstm_loads_no_application_dependency():
    code = (
        "import sys, torch_lstm_manual.lstm\n"
        "heavy = ['lightning', 'pytorch_lightning', 'tokenizers', 'torchmetrics', 'matplotlib']\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
