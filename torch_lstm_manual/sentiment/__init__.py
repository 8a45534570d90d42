"""The IMDB sentiment application built on the LSTM core: ``SentimentClassifier``,
its data modules (``torch_lstm_manual.sentiment.data``), the ``train.py`` command line
(``cli``), its callbacks, ``python -m torch_lstm_manual.sentiment.predict`` and a
bag-of-words baseline.

It needs the training stack (``pip install "torch_lstm_manual[train]"``: Lightning,
torchmetrics, tokenizers, ...); the core (``torch_lstm_manual``) never imports it.
Nothing is imported here, so that ``python -m torch_lstm_manual.sentiment.predict --help``
answers before torch and Lightning are loaded.
"""
