"""What a reviewer reads beside the accuracy of a final model: per-class precision, recall and F1,
the confusion matrix, the architecture as a diagram, and the champion measured on the same data.

Scikit-learn's metrics on the model's predictions of the test split. (MLflow's
``mlflow.models.evaluate`` takes tabular data; a batch of images is not a DataFrame.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trial_image.spec import CandidateSpec, with_defaults


def classification(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
                   ) -> tuple[dict[str, float], dict[str, Any]]:
    """Macro precision/recall/F1 as metrics, and the per-class figures with the confusion
    matrix (rows: true class, columns: predicted)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    metrics = {"Test-Macro-Precision": float(np.mean(precision)),
               "Test-Macro-Recall": float(np.mean(recall)), "Test-Macro-F1": float(np.mean(f1))}
    table = {"classes": [{"class": c, "precision": round(float(p), 4),
                          "recall": round(float(r), 4), "f1": round(float(f), 4),
                          "support": int(s)}
                         for c, p, r, f, s in zip(labels, precision, recall, f1, support,
                                                  strict=True)],
             "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}
    return metrics, table


def confusion_figure(matrix: list[list[int]], title: str) -> Any:
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    figure = Figure(figsize=(1.5 + 0.45 * len(counts), 1.2 + 0.45 * len(counts)),
                    layout="constrained")
    axis = figure.subplots()
    axis.imshow(counts, cmap="Blues")
    for (row, column), value in np.ndenumerate(counts):
        if value:
            axis.text(column, row, str(value), ha="center", va="center", fontsize=7,
                      color="white" if value > counts.max() / 2 else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_xticks(range(len(counts)))
    axis.set_yticks(range(len(counts)))
    axis.set_title(title)
    return figure


def _label(spec: CandidateSpec, index: int) -> str:
    if index == 0:
        return f"image {'×'.join(map(str, spec.input_shape))}"
    node = spec.nodes[index - 1]
    p = with_defaults(node.op, node.params)
    text = {"conv": "conv {kernel}×{kernel}, {filters}", "sep_conv": "sep conv {kernel}×{kernel}, "
            "{filters}", "depthwise_conv": "depthwise {kernel}×{kernel}",
            "pool": "{pool_type} pool {size}×{size}", "factorized_reduce": "reduce, {filters}",
            "identity": node.merge}[node.op].format(**p)
    if p.get("stride", 1) not in (1, None):
        text += f", stride {p['stride']}"
    if p.get("dilation", 1) != 1:
        text += f", dilation {p['dilation']}"
    return text


def architecture_figure(spec: CandidateSpec, title: str) -> Any:
    """The candidate's graph top to bottom: one box per node, the edge from the previous node
    straight, skip connections as arcs on alternating sides."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    count = len(spec.nodes) + 1
    figure = Figure(figsize=(5, 0.8 + 0.42 * (count + 1)), layout="constrained")
    axis = figure.subplots()
    axis.set_xlim(-2.2, 2.2)
    axis.set_ylim(-count - 0.5, 0.8)
    axis.axis("off")
    for index in range(count):
        axis.text(0, -index, _label(spec, index), ha="center", va="center", fontsize=7,
                  bbox={"boxstyle": "round", "facecolor": "#e8f0fe" if index else "#eeeeee"})
    axis.text(0, -count, f"pool, {spec.num_classes} classes", ha="center", va="center",
              fontsize=7, bbox={"boxstyle": "round", "facecolor": "#eeeeee"})
    edges = [(source, index) for index, node in enumerate(spec.nodes, start=1)
             for source in node.inputs] + [(count - 1, count)]
    for k, (source, target) in enumerate(edges):
        skip = target - source > 1
        side = 1 if k % 2 else -1
        axis.add_patch(FancyArrowPatch(
            (0.25 * side if skip else 0, -source - 0.22), (0.25 * side if skip else 0,
                                                           -target + 0.22),
            connectionstyle=f"arc3,rad={0.35 * side}" if skip else "arc3",
            arrowstyle="-|>", mutation_scale=8, linewidth=0.7,
            color="#c0392b" if skip else "#555555"))
    axis.set_title(title, fontsize=8)
    return figure


def size_figure(rows: list[dict[str, Any]], title: str) -> Any:
    """Test accuracy against file size, one point per variant (log size: int8 is ~4× smaller)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), layout="constrained")
    axis = figure.subplots()
    for row in rows:
        size = row.get("Compressed-Size-Bytes") or row["File-Size-Bytes"]  # the source: raw
        axis.scatter([size], [row["Test-Accuracy"]])
        axis.annotate(row["variant"], (size, row["Test-Accuracy"]), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("bytes, gzip-compressed (what pruning saves)")
    axis.set_ylabel("Test-Accuracy (measured with the variant)")
    axis.set_title(f"{title}: compressed variants", fontsize=9)
    return figure
