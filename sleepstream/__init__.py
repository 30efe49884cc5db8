"""sleepstream: real-time sleep staging from one EEG channel.

The run-time package never imports torch or :mod:`distill`; it loads an exported
ONNX student plus its model card.
"""

__version__ = "0.1.0"
