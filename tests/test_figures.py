"""The figures a reviewer reads in MLflow (issue 22): readable size, no overprinted labels, and
what each rests on."""

from __future__ import annotations

from tests.test_builder import ALL_OPS_CONFIG
from tests.test_frontends import DIGITS
from trial_image.frontends import enas
from trial_image.report import architecture_figure, size_figure


def pixels(figure) -> tuple[float, float]:
    width, height = figure.get_size_inches()
    return width * figure.dpi, height * figure.dpi


def test_the_architecture_diagram_is_large_enough_to_read():
    spec = enas.to_spec("[[1], [40, 0], [95, 0, 0], [103, 1, 0, 0]]", ALL_OPS_CONFIG,
                        frame=DIGITS)
    width, height = pixels(architecture_figure(spec, "candidate"))
    assert width >= 900 and height >= 600  # it was 500 × 332


def test_variants_that_tie_share_one_label_inside_the_axes():
    rows = [{"variant": "float32", "Test-Accuracy": 0.9972, "File-Size-Bytes": 143468,
             "Compressed-Size-Bytes": 66295},
            {"variant": "float16", "Test-Accuracy": 0.9972, "File-Size-Bytes": 77324,
             "Compressed-Size-Bytes": 66295},
            {"variant": "int8-full", "Test-Accuracy": 0.9944, "File-Size-Bytes": 42344,
             "Compressed-Size-Bytes": 32274}]
    figure = size_figure(rows, "m")
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert sorted(labels) == ["float32, float16", "int8-full"]
    figure.canvas.draw()
    inside = figure.axes[0].get_window_extent()
    for text in figure.axes[0].texts:
        box = text.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, text.get_text()
