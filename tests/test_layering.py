"""The layering of the package: the LSTM core needs torch only; the sentiment application
(``torch_lstm_manual.sentiment``, ``train.py``) needs the training stack and says so when it is missing."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING_STACK = ("lightning", "pytorch_lightning", "tokenizers", "torchmetrics", "matplotlib")


def run_python(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_the_core_imports_no_training_stack():
    code = (
        "import sys\n"
        "import torch\n"
        "import torch_lstm_manual\n"
        "from torch_lstm_manual import LSTM, LSTMFunction, lstm_layer\n"
        "output, _ = LSTM(2, 3)(torch.zeros(1, 1, 2))\n"
        "assert output.shape == (1, 1, 3), output.shape\n"
        f"print(sorted(name for name in {TRAINING_STACK!r} if name in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_train_py_without_the_training_stack_says_how_to_install_it():
    """``python train.py`` where Lightning cannot be imported: one line naming the install command."""
    code = (
        "import runpy, sys\n"
        "sys.modules['lightning'] = None  # as if it were not installed\n"
        "sys.argv = ['train.py']\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    result = run_python(code)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "missing: lightning" in line and 'pip install -e ".[train]"' in line
