"""Train the sentiment classifier: ``python train.py`` (fit, then test) or
``python train.py fit|validate|test|predict --config configs/imdb.yaml ...``.

Everything is in ``torch_lstm_manual.sentiment.cli``; ``python train.py --help`` lists the options.
It needs the training stack: ``pip install -e ".[train]"``.
"""

import importlib.util
import sys

TRAINING_STACK = ("lightning", "jsonargparse", "torchmetrics", "tokenizers", "matplotlib", "tensorboard")
INSTALL = 'pip install -e ".[train]"'


def missing_packages() -> list[str]:
    """The packages of the training stack that cannot be imported."""
    missing = []
    for name in TRAINING_STACK:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a package set to None in sys.modules, or a broken one
            found = False
        if not found:
            missing.append(name)
    return missing


if __name__ == "__main__":
    missing = missing_packages()
    if missing:
        sys.exit(
            f"train.py: error: the training stack is not installed (missing: {', '.join(missing)}). "
            f"Install it with: {INSTALL}"
        )
    from torch_lstm_manual.sentiment.cli import main

    main()
