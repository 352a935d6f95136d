"""Compression of a trained model into deployable variants, each measured with itself.

``litert`` converts to LiteRT (float32, float16, dynamic-range int8, full-integer int8) and runs
a ``.tflite`` file with the LiteRT interpreter; ``pruning`` is magnitude pruning for Keras 3 with
Zhu & Gupta's polynomial schedule; ``distillation`` trains a smaller candidate on the teacher's
softened outputs; ``pyfunc`` makes a ``.tflite`` file an MLflow model; ``run`` is the
``python -m trial_image compress`` process that does them all and logs one MLflow run each.
"""
