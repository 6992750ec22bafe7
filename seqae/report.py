"""``report.html``: one self-contained page about a model and its data.

Everything is inside the file (the PNG figures as ``data:`` URIs, the styles inline), so
the page can be mailed or opened offline. Sections, each an element with an id:
``summary`` (data and training facts), ``figures``, ``top`` (the highest-scoring
sequences, with ids, scores and, given their per-step scores, each one's worst step) and
``files``.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .plots import MARKED_SHARE, MAX_MARKED

__all__ = ["write_report", "top_rows", "worst_step"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; }
td, th { padding: 0.25rem 0.7rem; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; flex: 1 1 480px; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
tr.flag td { background: #fff1f0; }
"""

_CAPTIONS = {
    "loss": "Training and validation loss per epoch (the black dot marks the weights kept).",
    "reconstructions": "Sequences and their reconstructions, at each sequence's own length. "
                       "Shaded red: each sequence's steps with the highest per-step error "
                       f"(the worst {MARKED_SHARE:.0%} of its steps, at least 1, at most "
                       f"{MAX_MARKED}); the darkest "
                       "is its worst step, the one named beside it and in the table below.",
    "embeddings": "Embeddings projected on their first two principal components "
                  "(coloured by label when there is one).",
    "scores": "Anomaly scores; the line is the model's threshold.",
}


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    stem = Path(path).stem
    caption = _CAPTIONS.get(stem, stem)
    return (f'<figure><img alt="{html.escape(stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def top_rows(scores: ArrayLike, top: int) -> np.ndarray:
    """The positions of the ``top`` highest of ``scores`` ``(N,)``, highest first (a tie:
    the earlier position first): the rows of the page's table."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top]


def worst_step(per_step: ArrayLike) -> int | None:
    """The step (from 0) of the highest of one sequence's per-step scores ``(T,)``, NaN
    steps left out; None when every step is NaN."""
    s = np.asarray(per_step, dtype=np.float64).reshape(-1)
    return None if np.isnan(s).all() else int(np.nanargmax(s))


def write_report(
    path: str | os.PathLike,
    title: str,
    facts: Sequence[tuple[str, Any]],
    figures: Sequence[str | os.PathLike],
    ids: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    threshold: float | None = None,
    labels: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    files: Sequence[str] = (),
    top: int = 20,
    per_step: Mapping[int, ArrayLike] | None = None,
) -> Path:
    """Write the page (atomically) and return its path.

    Args:
        path: the ``.html`` file to write.
        title: the page's heading.
        facts: ``(name, value)`` rows of the summary table.
        figures: PNG files to embed, in order.
        ids, scores, threshold, labels, lengths: per-sequence data for the table of the
            ``top`` highest scores (rows above ``threshold`` are marked).
        files: names of the other outputs, listed at the end.
        top: how many rows the table lists (`top_rows`).
        per_step: ``{position: (T,) per-step scores}`` for at least the listed rows
            (``score(..., per_step=True)`` of those sequences); with it the table has a
            "worst step" column, each row's `worst_step`.
    """
    from .io import atomic_write_text

    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<section id="summary"><h2>Data and training</h2><table>',
    ]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
              for k, v in facts]
    parts.append("</table></section>")
    parts.append('<section id="figures"><h2>Figures</h2><div class="figures">')
    parts += [_img(Path(f)) for f in figures]
    parts.append("</div></section>")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        order = top_rows(scores, top)
        id_name = "id" if ids is not None else "position"
        id_arr = np.arange(len(scores)) if ids is None else np.asarray(ids)
        label_arr = None if labels is None else np.asarray(labels)
        length_arr = None if lengths is None else np.asarray(lengths)
        head = ["rank", id_name] + (["label"] if labels is not None else []) + (
            ["length"] if lengths is not None else []) + ["score"] + (
            ["worst step"] if per_step is not None else []) + ["above threshold"]
        num = {0, len(head) - 2 - (per_step is not None), len(head) - 2}
        parts.append(f'<section id="top"><h2>Highest anomaly scores ({len(order)} of '
                     f"{len(scores)})</h2><table><tr>"
                     + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
        for rank, i in enumerate(order, 1):
            flag = threshold is not None and scores[i] > threshold
            cells = [str(rank), html.escape(str(id_arr[i]))]
            if label_arr is not None:
                cells.append(html.escape(str(label_arr[i])))
            if length_arr is not None:
                cells.append(str(int(length_arr[i])))
            cells.append(f"{scores[i]:.5g}")
            if per_step is not None:
                w = worst_step(per_step[int(i)])
                cells.append("" if w is None else str(w))
            cells.append("yes" if flag else "no")
            parts.append(f'<tr{" class=flag" if flag else ""}>' + "".join(
                f'<td class="num">{c}</td>' if j in num else f"<td>{c}</td>"
                for j, c in enumerate(cells)) + "</tr>")
        parts.append("</table>")
        if per_step is not None:
            parts.append("<p>Worst step: the step (from 0, as on the figures' step axis) "
                         "with the highest per-step error, the mean squared error over "
                         "that step's observed features; the reconstructions figure "
                         "shades it darkest.</p>")
        if threshold is not None:
            parts.append(f"<p>Threshold {threshold:.5g}: {int((scores > threshold).sum())} of "
                         f"{len(scores)} sequences above it.</p>")
        parts.append("</section>")
    if files:
        parts.append('<section id="files"><h2>Files</h2><ul>'
                     + "".join(f"<li>{html.escape(f)}</li>" for f in files) + "</ul></section>")
    parts.append("</body></html>")
    path = Path(path)
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path
