"""The one Keras builder: ENAS opt_params honoured, shape rules, DARTS cells."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.conftest import wire_example
from tests.test_frontends import DARTS_V2, DIGITS, KATIB_GENOTYPE, adapted_nn_config
from trial_image.builder import build_model, merge_inputs
from trial_image.errors import InputError
from trial_image.frontends import enas, genotype
from trial_image.spec import CandidateSpec, Node

ALL_OPS_CONFIG = (
    "{'num_layers': 4, 'input_sizes': [8, 8, 1], 'output_sizes': [10], 'embedding': {"
    "'1': {'opt_id': 1, 'opt_type': 'convolution', "
    "'opt_params': {'filter_size': '5', 'num_filter': '48', 'stride': '2'}}, "
    "'40': {'opt_id': 40, 'opt_type': 'separable_convolution', "
    "'opt_params': {'filter_size': '7', 'num_filter': '96', 'stride': '1', "
    "'depth_multiplier': '2'}},"
    " '95': {'opt_id': 95, 'opt_type': 'depthwise_convolution', "
    "'opt_params': {'filter_size': '3', 'stride': '2', 'depth_multiplier': '2'}}, "
    "'103': {'opt_id': 103, 'opt_type': 'reduction', "
    "'opt_params': {'reduction_type': 'max_pooling', 'pool_size': 3}}}}"
)


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_enas_builder_honours_every_opt_param():
    spec = enas.to_spec("[[1], [40, 0], [95, 0, 0], [103, 1, 0, 0]]", ALL_OPS_CONFIG, frame=DIGITS)
    model = build_model(spec)
    (conv,) = [c for c in layers_of(model, keras.layers.Conv2D)
               if type(c) is keras.layers.Conv2D]
    assert (conv.filters, conv.kernel_size, conv.strides) == (48, (5, 5), (2, 2))
    (sep,) = layers_of(model, keras.layers.SeparableConv2D)
    assert (sep.filters, sep.kernel_size, sep.strides, sep.depth_multiplier) == (
        96, (7, 7), (1, 1), 2)
    (dw,) = layers_of(model, keras.layers.DepthwiseConv2D)
    assert (dw.kernel_size, dw.strides, dw.depth_multiplier) == ((3, 3), (2, 2), 2)
    (pool,) = layers_of(model, keras.layers.MaxPooling2D)
    assert (pool.pool_size, pool.strides) == ((3, 3), (3, 3))
    # Layer 4 also reads the network input (skip bit 0): the 8×8 input shrunk to layer 3's 2×2
    # by a 4×4 average (a LiteRT builtin; sizes that do not divide are resized bilinearly).
    (shrink,) = [p for p in layers_of(model, keras.layers.AveragePooling2D)
                 if p.name.endswith("_resize0")]
    assert shrink.pool_size == (4, 4) and shrink.output.shape[1:3] == (2, 2)
    assert layers_of(model, keras.layers.Resizing) == []
    # Pre-activation ReLU-Conv-BN, except that nothing clips the raw network input; the head
    # rectifies before it pools.
    assert [r.name for r in layers_of(model, keras.layers.ReLU)] == ["n2_relu", "n3_relu",
                                                                     "head_relu"]
    assert len(layers_of(model, keras.layers.BatchNormalization)) == 3
    assert model.output_shape == (None, 10)


def test_avg_pooling_reduction():
    config = ALL_OPS_CONFIG.replace("'max_pooling', 'pool_size': 3",
                                    "'avg_pooling', 'pool_size': 2")
    spec = enas.to_spec("[[103]]", config.replace("'num_layers': 4", "'num_layers': 1"),
                        frame=DIGITS)
    (pool,) = layers_of(build_model(spec), keras.layers.AveragePooling2D)
    assert pool.pool_size == (2, 2)


def test_katib_wire_example_builds_on_8x8_without_shrinking_below_1x1():
    spec = enas.to_spec(wire_example("ENAS architecture"), adapted_nn_config(), frame=DIGITS)
    model = build_model(spec)
    # Five stride-2 layers on an 8×8 map: "same" padding stops at 1×1 instead of failing.
    assert model.get_layer("n8_bn").output.shape[1:3] == (1, 1)
    assert model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 10)


def test_darts_cells_build_and_reduce():
    spec = genotype.to_spec(DARTS_V2, num_layers=3, init_channels=4, stem_multiplier=3,
                            frame=DIGITS)
    model = build_model(spec)
    assert model.get_layer("n1_conv").filters == 12  # stem = 3 × 4 channels
    head_input = model.get_layer("head_pool").input
    assert tuple(head_input.shape[1:]) == (2, 2, 4 * 16)  # 2 reductions; 4 nodes × 16 channels
    one_layer = genotype.to_spec(KATIB_GENOTYPE, num_layers=1, init_channels=1,
                                 stem_multiplier=1, frame=DIGITS)
    assert build_model(one_layer).get_layer("head_pool").input.shape[1:3] == (8, 8)


def test_add_merge_of_different_shapes_is_rejected():
    spec = CandidateSpec(input_shape=(8, 8, 1), num_classes=10, nodes=(
        Node("conv", (0,), {"filters": 4, "kernel": 3}),
        Node("conv", (0,), {"filters": 8, "kernel": 3}),
        Node("identity", (1, 2), merge="add"),
    ))
    with pytest.raises(InputError, match="cannot add inputs of different shapes"):
        build_model(spec)


def test_sizes_that_do_not_divide_are_resized_bilinearly():
    x = keras.Input((7, 7, 2))
    merged = merge_inputs([x, keras.layers.MaxPooling2D(2, padding="same")(x)], "concat", "m")
    (resize,) = [layer for layer in keras.Model(x, merged).layers
                 if isinstance(layer, keras.layers.Resizing)]
    assert (resize.height, resize.width, resize.interpolation) == (4, 4, "bilinear")
    assert merged.shape[1:] == (4, 4, 4)
