"""Sentiment of raw texts with a trained checkpoint: ``python predict.py --ckpt best.ckpt "a great movie"``.

The same as ``python -m torch_lstm_manual.predict``; ``--help`` lists the options.
"""

from torch_lstm_manual.predict import main

if __name__ == "__main__":
    main()
