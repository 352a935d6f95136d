"""What a reviewer reads beside the measure of a final model: per-class precision, recall and F1
with the confusion matrix (classification), or MAE, R², the residuals and the error by decile of
the target (regression); the architecture as a diagram; the champion measured on the same data.

Scikit-learn's metrics on the model's predictions of the test split. (MLflow's
``mlflow.models.evaluate`` takes tabular data; a batch of images is not a DataFrame.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trial_image.spec import CandidateSpec, with_defaults

DPI = 150  # figures MLflow shows: 6.5 in wide is ~1,000 pixels


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


def regression(y_true: np.ndarray, y_pred: np.ndarray
               ) -> tuple[dict[str, float], dict[str, Any]]:
    """RMSE, MAE and R² as metrics, and the error by decile of the true target (where in its
    range the model errs: a model that predicts the mean does well in the middle deciles and
    badly at both ends)."""
    errors = y_pred.astype("float64") - y_true.astype("float64")
    spread = float(np.sum((y_true - y_true.mean()) ** 2))
    metrics = {"Test-RMSE": float(np.sqrt(np.mean(errors ** 2))),
               "Test-MAE": float(np.mean(np.abs(errors))),
               "Test-R2": 1.0 - float(np.sum(errors ** 2)) / spread if spread else 0.0}
    edges = np.quantile(y_true, np.linspace(0, 1, 11))
    deciles = np.clip(np.searchsorted(edges, y_true, side="right") - 1, 0, 9)
    table = {"deciles": [{"decile": d + 1, "from": round(float(edges[d]), 6),
                          "to": round(float(edges[d + 1]), 6), "count": int(np.sum(chosen)),
                          "mae": round(float(np.mean(np.abs(errors[chosen]))), 6),
                          "bias": round(float(np.mean(errors[chosen])), 6)}
                         for d in range(10) if np.any(chosen := deciles == d)]}
    return metrics, table


def residual_figure(y_true: np.ndarray, y_pred: np.ndarray, title: str) -> Any:
    """Predicted against true (the diagonal is perfect), and the residual against the truth."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 3.2), dpi=DPI, layout="constrained")
    left, right = figure.subplots(1, 2)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    left.scatter(y_true, y_pred, s=6, alpha=0.6)
    left.plot([low, high], [low, high], color="#c0392b", linewidth=0.8)
    left.set_xlabel("true")
    left.set_ylabel("predicted")
    right.scatter(y_true, y_pred - y_true, s=6, alpha=0.6)
    right.axhline(0, color="#c0392b", linewidth=0.8)
    right.set_xlabel("true")
    right.set_ylabel("residual (predicted − true)")
    figure.suptitle(title, fontsize=10)
    return figure


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
        return spec.family.describe(spec.input_shape)
    node = spec.nodes[index - 1]
    p = with_defaults(node.op, node.params)
    text = {"conv": "conv {kernel}×{kernel}, {filters}", "sep_conv": "sep conv {kernel}×{kernel}, "
            "{filters}", "depthwise_conv": "depthwise {kernel}×{kernel}",
            "pool": "{pool_type} pool {size}×{size}", "factorized_reduce": "reduce, {filters}",
            "identity": node.merge, "dense": "dense {units}", "residual": "residual {units}",
            "glu": "GLU {units}", "attention": "attention {heads}×{key_dim}",
            "conv1d": "conv1d {kernel}, {filters}", "rnn": "{cell} {units}"}[node.op].format(**p)
    if p.get("stride", 1) not in (1, None):
        text += f", stride {p['stride']}"
    if p.get("dilation", 1) != 1:
        text += f", dilation {p['dilation']}"
    return text


WIDE_LABELS = {"linear": "wide: linear, added", "decomposed": "wide: linear on trend\n"
               "+ remainder, added", "kernels": "wide: linear on\nMiniRocket features, added"}


def architecture_figure(spec: CandidateSpec, title: str) -> Any:
    """The candidate's graph top to bottom: one box per node, the edge from the previous node
    straight, skip connections as arcs on alternating sides."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    count = len(spec.nodes) + 1
    figure = Figure(figsize=(6.5, 1.0 + 0.55 * (count + 1)), dpi=DPI, layout="constrained")
    axis = figure.subplots()
    axis.set_xlim(-2.2, 2.2)
    axis.set_ylim(-count - 0.5, 0.8)
    axis.axis("off")
    for index in range(count):
        axis.text(0, -index, _label(spec, index), ha="center", va="center", fontsize=9,
                  bbox={"boxstyle": "round", "facecolor": "#e8f0fe" if index else "#eeeeee"})
    head = f"{spec.num_classes} classes" if spec.task == "classification" else "one number"
    axis.text(0, -count, f"pool, {head}" if spec.family.pooling else head, ha="center",
              va="center", fontsize=9, bbox={"boxstyle": "round", "facecolor": "#eeeeee"})
    if spec.head.wide != "none":  # the wide path: from the inputs to the head, on the right
        axis.text(1.5, -count / 2, WIDE_LABELS[spec.head.wide], ha="center", va="center",
                  fontsize=9, bbox={"boxstyle": "round", "facecolor": "#fdebd0"})
        for start, end in (((0.6, 0), (1.5, -count / 2 + 0.25)),
                           ((1.5, -count / 2 - 0.25), (0.6, -count))):
            axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=8,
                                           linewidth=0.7, color="#b9770e"))
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
    axis.set_title(title, fontsize=10)
    return figure


def size_figure(rows: list[dict[str, Any]], title: str, metric: str = "Test-Accuracy") -> Any:
    """Test accuracy (or RMSE) against file size, one point per variant (log size: int8 is ~4×
    smaller). Variants tie often (float32 and float16 in accuracy and size after gzip; several
    in accuracy alone), so the names go to a legend, one entry a point (variants on the same
    point share one), never as labels beside points that could print over each other."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=DPI, layout="constrained")
    axis = figure.subplots()
    points: dict[tuple[float, float], list[str]] = {}
    for row in rows:
        size = row.get("Compressed-Size-Bytes") or row["File-Size-Bytes"]  # the source: raw
        points.setdefault((float(size), round(float(row[metric]), 4)), []).append(
            row["variant"])
    markers = "osD^v<>ph*"
    for k, ((size, accuracy), names) in enumerate(sorted(points.items())):
        axis.scatter([size], [accuracy], marker=markers[k % len(markers)], s=40,
                     label=", ".join(names))
    axis.legend(fontsize=8, loc="best", title="variant", title_fontsize=8)
    axis.set_xscale("log")
    axis.margins(x=0.3, y=0.15)
    axis.set_xlabel("bytes, gzip-compressed (what pruning saves)")
    axis.set_ylabel(f"{metric} (measured with the variant)")
    axis.set_title(f"{title}: compressed variants", fontsize=10)
    return figure
