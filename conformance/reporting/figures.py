"""The plots' matplotlib, loaded when a plot is drawn: importing pyplot costs about a second,
which a process that draws none (an xdist worker, whose start-up imports every module of the
suite; diff; a model run without its HTML) does not pay."""

from __future__ import annotations

import base64
import io
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_base64(figure: Any, **savefig: Any) -> str:
    """The figure as PNG bytes in base64 (for a data: URL), the figure closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig)
    pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
