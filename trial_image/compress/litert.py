"""LiteRT: TensorFlow's converter in, the LiteRT interpreter (``ai-edge-litert``) out.

``tf.lite.Interpreter`` is deprecated in favour of ``ai_edge_litert``; the converter is still
TensorFlow's. A variant's accuracy and latency are measured by running its ``.tflite`` file, never
the Keras model it came from. Full-integer int8 has int8 inputs and outputs (what integer-only
accelerators take); :class:`LiteRT` quantizes raw inputs and dequantizes outputs with the file's
own scales, so every variant takes the same raw images as the float model.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

QUANTIZATIONS = ("float32", "float16", "int8-dynamic", "int8-full")
THREADS = 1  # batch-1 latency on one CPU thread: comparable across machines and variants


def convert(model: Any, variant: str, representative: np.ndarray | None = None,
            per_channel: bool = True) -> bytes:
    """The ``.tflite`` bytes of ``model`` quantized as ``variant``; ``int8-full`` calibrates its
    activation ranges on ``representative`` (training images). ``per_channel=False``: one
    scale per convolution kernel (and its bias) instead of one per output channel; each
    channel's scale and zero point cost 12 bytes, several percent of a small network's int8
    file. The classifier's kernel keeps its per-channel scales either way."""
    if variant == "int8-full" and isinstance(model.input, dict):
        raise ValueError("int8-full takes one numeric tensor; this model reads columns (text "
                         "among them)")
    with _converter(model) as converter:
        return _convert(converter, variant, representative, per_channel)


def _convert(converter: Any, variant: str, representative: np.ndarray | None,
             per_channel: bool) -> bytes:
    import tensorflow as tf

    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float kernels
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8-full":
        if representative is None:
            raise ValueError("int8-full needs a representative dataset")
        converter.representative_dataset = lambda: ([x[None].astype(np.float32)]
                                                    for x in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        converter._experimental_disable_per_channel = not per_channel  # no public switch
    elif variant not in ("float32", "int8-dynamic"):
        raise ValueError(f"unknown LiteRT variant {variant!r}; known: {', '.join(QUANTIZATIONS)}")
    with _quiet():  # the converter prints the traced function's signature on stdout
        return converter.convert()


@contextlib.contextmanager
def _converter(model: Any) -> Iterator[Any]:
    """TensorFlow's converter for ``model``. A table's model takes one input per column (text
    among them): ``from_keras_model`` cannot take a dict of inputs, and a concrete function
    keeps the weights as variables the interpreter never initialises (its outputs were
    garbage here), so it goes through a SavedModel export, which freezes them."""
    import tensorflow as tf

    if not isinstance(model.input, dict):
        yield tf.lite.TFLiteConverter.from_keras_model(unrolled(model))
        return
    specs = {name: tf.TensorSpec(tensor.shape, tensor.dtype, name=name)
             for name, tensor in model.input.items()}
    with tempfile.TemporaryDirectory() as folder, _quiet():
        model.export(folder, input_signature=[specs], verbose=False)
        yield tf.lite.TFLiteConverter.from_saved_model(folder)


def unrolled(model: Any) -> Any:
    """``model`` with its recurrent layers unrolled (same weights): LiteRT's builtin operations
    have no loop for a GRU or an LSTM, an unrolled one is plain matrix arithmetic. Training
    keeps them rolled (unrolled, a 168-step GRU trained 4× slower here)."""
    import keras

    def rnns(layer: Any) -> list[Any]:
        if isinstance(layer, keras.layers.Bidirectional):
            return [layer.forward_layer, layer.backward_layer]
        return [layer] if isinstance(layer, keras.layers.RNN) else []

    if not any(rnns(layer) for layer in model.layers):
        return model

    def unroll(layer: Any) -> Any:
        config = layer.get_config()
        if isinstance(layer, keras.layers.Bidirectional):
            config["layer"]["config"]["unroll"] = True
            if config.get("backward_layer"):
                config["backward_layer"]["config"]["unroll"] = True
        elif rnns(layer):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=unroll)
    clone.set_weights(model.get_weights())
    return clone


@contextlib.contextmanager
def _quiet():
    """File descriptors 1 and 2 pointed away (the converter's C++ logs bypass sys.stdout)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class LiteRT:
    """One ``.tflite`` model in the LiteRT interpreter."""

    def __init__(self, content: bytes, threads: int = THREADS) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=content, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = 1

    def _resize(self, batch: int) -> None:
        if batch != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"],
                                                 [batch, *self.input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.batch = batch

    def predict(self, x: Any) -> np.ndarray:
        """What the float model answers for raw ``x`` (class probabilities, or forecasts);
        ``x`` a tensor, or a table's columns by name."""
        if isinstance(x, dict):
            return self._predict_columns(x)
        self._resize(len(x))
        data = np.asarray(x, dtype=np.float32)
        if self.input["dtype"] != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            data = np.clip(np.round(data / scale + zero), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], data.astype(self.input["dtype"]))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out

    def _predict_columns(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """A table's model: its signature takes the columns by name (strings as UTF-8 bytes)
        and resizes to the batch itself."""
        runner = self.interpreter.get_signature_runner()
        feed = {name: values.astype(np.float32) if values.dtype.kind == "f"
                else np.char.encode(values.astype(str), "utf-8")
                for name, values in columns.items()}
        return next(iter(runner(**feed).values()))

    def latency_ms(self, sample: Any, repeats: int = 100) -> float:
        """Median wall time of one batch-1 invocation (after 10 warm-up runs), milliseconds."""
        one = ({name: values[:1] for name, values in sample.items()}
               if isinstance(sample, dict) else sample[:1])
        for _ in range(10):
            self.predict(one)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.predict(one)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    def tensor_types(self) -> set[str]:
        """The dtypes of every tensor in the graph (weights and activations)."""
        return {np.dtype(t["dtype"]).name for t in self.interpreter.get_tensor_details()}
