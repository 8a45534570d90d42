"""Train the sentiment classifier: ``python train.py`` (fit, then test) or
``python train.py fit|validate|test|predict --config configs/imdb.yaml ...``.

Everything is in ``torch_lstm_manual.cli``; ``python train.py --help`` lists the options.
"""

from torch_lstm_manual.cli import main

if __name__ == "__main__":
    main()
