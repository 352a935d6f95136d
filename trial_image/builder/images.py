"""Image operations on ``(batch, height, width, channels)`` maps.

Shape rules, so that any architecture a front end can express is buildable:

* every convolution and pooling uses ``padding="same"``: a map shrinks to ``ceil(n / stride)``
  and never below 1×1, so stride-2 or pooling layers on a 1×1 map act as identity (Katib's ENAS
  library makes reductions on 1×1 maps the identity too);
* inputs merged by ``concat`` that differ in height/width are shrunk to the smallest one: an
  average pooling when the sizes divide (the area average an anti-aliased resize computes),
  bilinear resizing otherwise; both are LiteRT builtins, so every candidate converts to
  ``.tflite`` (Katib's example zero-pads the smaller ones instead, which feeds zeros to later
  layers);
* inputs merged by ``add`` must have identical shapes; otherwise the candidate is rejected;
* a convolution reading only the network input gets no leading ReLU (data may be negative);
* Keras cannot stride and dilate in one convolution, so a strided dilated convolution runs at
  stride 1 and is then subsampled (a 1×1 max-pool with that stride).
"""

from __future__ import annotations

from keras import layers

from trial_image.errors import InputError
from trial_image.spec import Node, with_defaults

# Keras' default BN momentum (0.99) needs hundreds of steps before its moving statistics are
# usable; small datasets (digits: 23 steps an epoch) then validate near chance for several epochs.
# 0.9 is PyTorch's (and DARTS') default.
BN_MOMENTUM = 0.9


def merge_inputs(tensors: list, how: str, name: str):
    if len(tensors) == 1:
        return tensors[0]
    if how == "add":
        shapes = {tuple(t.shape[1:]) for t in tensors}
        if len(shapes) > 1:
            raise InputError(f"{name}: cannot add inputs of different shapes {sorted(shapes)}")
        return layers.Add(name=f"{name}_add")(tensors)
    if len(tensors[0].shape) < 4:  # a table's rows, a sequence's steps: nothing to shrink
        return layers.Concatenate(axis=-1, name=f"{name}_concat")(tensors)
    height = min(t.shape[1] for t in tensors)
    width = min(t.shape[2] for t in tensors)
    same_size = [_shrink(t, height, width, f"{name}_resize{k}") for k, t in enumerate(tensors)]
    return layers.Concatenate(axis=-1, name=f"{name}_concat")(same_size)


def _shrink(tensor, height: int, width: int, name: str):
    if (tensor.shape[1], tensor.shape[2]) == (height, width):
        return tensor
    if tensor.shape[1] % height == 0 and tensor.shape[2] % width == 0:
        factors = (tensor.shape[1] // height, tensor.shape[2] // width)
        return layers.AveragePooling2D(factors, name=name)(tensor)
    return layers.Resizing(height, width, interpolation="bilinear", name=name)(tensor)


def apply_node(node: Node, x, name: str, *, affine: bool = True):
    """``affine=False``: batch norms without learnable scale and shift, as in DARTS' search
    (a candidate operation must not rescale its output against the mixing weights)."""
    p = with_defaults(node.op, node.params)
    if node.op == "identity":
        return x
    if node.op == "pool":
        pool = layers.MaxPooling2D if p["pool_type"] == "max" else layers.AveragePooling2D
        stride = p["stride"] or p["size"]
        return pool(p["size"], strides=stride, padding="same",
                    name=f"{name}_{p['pool_type']}pool")(x)
    if node.op == "factorized_reduce":
        return _factorized_reduce(x, p["filters"], name, affine)
    if node.inputs != (0,):  # raw inputs may be negative (npz data): no ReLU on them
        x = layers.ReLU(name=f"{name}_relu")(x)
    stride, dilation = p["stride"], p.get("dilation", 1)
    conv_stride = 1 if dilation > 1 else stride
    common = {"padding": "same", "use_bias": not p["batch_norm"], "strides": conv_stride}
    if node.op == "conv":
        x = layers.Conv2D(p["filters"], p["kernel"], dilation_rate=dilation, name=f"{name}_conv",
                          **common)(x)
    elif node.op == "sep_conv":
        x = layers.SeparableConv2D(p["filters"], p["kernel"], dilation_rate=dilation,
                                   depth_multiplier=p["depth_multiplier"], name=f"{name}_sepconv",
                                   **common)(x)
    else:  # depthwise_conv
        x = layers.DepthwiseConv2D(p["kernel"], depth_multiplier=p["depth_multiplier"],
                                   name=f"{name}_dwconv", **common)(x)
    if conv_stride != stride:
        x = layers.MaxPooling2D(1, strides=stride, padding="same", name=f"{name}_subsample")(x)
    if p["batch_norm"]:
        x = batch_norm(x, name, affine)
    return x


def batch_norm(x, name: str, affine: bool = True):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, center=affine, scale=affine,
                                     name=f"{name}_bn")(x)


def _factorized_reduce(x, filters: int, name: str, affine: bool):
    """Halve height and width without losing every other pixel (DARTS' FactorizedReduce)."""
    x = layers.ReLU(name=f"{name}_relu")(x)
    shifted = x if x.shape[1] < 2 or x.shape[2] < 2 else layers.Cropping2D(
        ((1, 0), (1, 0)), name=f"{name}_shift")(x)
    half = filters // 2
    a = layers.Conv2D(half, 1, strides=2, padding="same", use_bias=False, name=f"{name}_fr_a")(x)
    b = layers.Conv2D(filters - half, 1, strides=2, padding="same", use_bias=False,
                      name=f"{name}_fr_b")(shifted)
    x = layers.Concatenate(axis=-1, name=f"{name}_fr_concat")([a, b])
    return batch_norm(x, name, affine)
