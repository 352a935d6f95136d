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


def test_variants_are_named_in_a_legend_that_nothing_overprints():
    """make run's variants (this version): several tie in accuracy at nearby sizes, where labels
    beside the points printed over each other ('int8-dynanfloat16'); points on the same spot
    (float32 and float16 after gzip, sometimes) share one entry."""
    rows = [{"variant": v, "Test-Accuracy": a, "File-Size-Bytes": 158724,
             "Compressed-Size-Bytes": c} for v, a, c in [
                ("float32", 0.9944, 143632), ("float16", 0.9944, 73009),
                ("int8-dynamic", 0.9944, 39142), ("int8-full", 0.9917, 36359),
                ("pruned-50", 0.9917, 87790), ("pruned-80", 0.9889, 45398),
                ("distilled", 0.9944, 61724), ("twin", 0.9944, 61724)]]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = size_figure(rows, "m")
    axis = figure.axes[0]
    assert not axis.texts  # no label beside a point
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    legend = axis.get_legend()
    names = [t.get_text() for t in legend.get_texts()]
    assert sorted(names) == sorted(["float32", "float16", "int8-dynamic", "int8-full",
                                    "pruned-50", "pruned-80", "distilled, twin"])
    from matplotlib.transforms import Bbox

    renderer = canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in legend.get_texts()]
    for k, box in enumerate(boxes):  # no two entries share a pixel (touching edges may)
        for other in boxes[k + 1:]:
            shared = Bbox.intersection(box, other)
            assert shared is None or shared.width * shared.height < 1, names[k]
    inside = figure.bbox
    frame = legend.get_window_extent()
    assert inside.x0 <= frame.x0 and frame.x1 <= inside.x1 and inside.y0 <= frame.y0 \
        and frame.y1 <= inside.y1
