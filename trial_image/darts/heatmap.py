"""α as a heat-map: one panel per cell type, a row per edge (``node ← input``), a column per
primitive, softmax weights as colours and numbers."""

from __future__ import annotations

from typing import Any

import numpy as np

from trial_image.darts.supernet import SupernetShape


def alpha_heatmap(probabilities: dict[str, np.ndarray], shape: SupernetShape,
                  title: str) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    rows = [f"{node + 2} ← {source}" for node in range(shape.num_nodes)
            for source in shape.inputs_of(node)]
    columns = [p.replace("convolution", "conv").replace("pooling", "pool")
               .replace("connection", "conn") for p in shape.primitives]
    figure = Figure(figsize=(3 + 1.0 * len(columns) * 2, 1.5 + 0.35 * len(rows)),
                    layout="constrained")
    axes = figure.subplots(1, 2)
    image = None
    for axis, (kind, weights) in zip(axes, probabilities.items(), strict=True):
        image = axis.imshow(weights, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        axis.set_title(f"{kind} cell")
        axis.set_xticks(range(len(columns)), labels=columns, rotation=45, ha="right")
        axis.set_yticks(range(len(rows)), labels=rows)
        for (r, c), value in np.ndenumerate(weights):
            axis.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if value < 0.5 else "black")
    figure.colorbar(image, ax=axes, label="softmax(α)")
    figure.suptitle(title)
    return figure
