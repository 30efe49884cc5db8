"""distill: offline training, SleepKD and baseline distillation, evaluation and ONNX export.

May import :mod:`sleepstream` (readers, stages, signal contract); never the reverse.
"""
