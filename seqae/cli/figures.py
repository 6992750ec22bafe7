"""``seqae plot`` and ``seqae demo``: the figures and the report page of a model (on
data, or on the built-in demo data, which the demo trains on first)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..tables import Texts, lengths_of
from .common import (
    UsageError,
    best_epoch_text,
    data_for_model,
    fit,
    in_memory,
    load,
    located,
    log,
)

__all__ = ["cmd_plot", "cmd_demo"]


# The rows of the report's table of highest scores.
TOP = 20


def _step_scores(ae, seqs, scores) -> dict[int, Any] | None:
    """``{position: (T,) per-step scores}`` of the sequences the reconstructions figure
    draws and the report's table lists, scored together (None for texts, and for a model
    scoring by its embeddings' distances, ``anomaly_score="neighbours"``, which has no
    per-step scores)."""
    import numpy as np

    from ..plots import reconstruction_picks
    from ..report import top_rows

    if isinstance(seqs, Texts) or ae.neighbours_ is not None:
        return None
    shown = np.unique(np.concatenate([top_rows(scores, TOP),
                                      [i for _, i in reconstruction_picks(scores)]]))
    steps = ae.score(seqs.take(shown), per_step=True)
    return {int(i): steps[k][:, 0] for k, i in enumerate(shown)}


def _write_plots(ae, out: Path, seqs=None, labels=None, Z=None, scores=None,
                 per_step=None) -> list[Path]:
    """The PNG figures; ``Z``, ``scores`` and ``per_step`` (`_step_scores`) of ``seqs``
    when the caller has them."""
    from .. import plots

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if ae.history_:
        written.append(plots.plot_history(ae.history_, out / "loss.png"))
    if seqs is not None:
        scores = located(ae.score, seqs) if scores is None else scores
        if not isinstance(seqs, Texts):  # texts: see `seqae reconstruct`
            per_step = _step_scores(ae, seqs, scores) if per_step is None else per_step
            written.append(plots.plot_reconstructions(seqs, ae.reconstruct(seqs), scores,
                                                      out / "reconstructions.png",
                                                      per_step=per_step,
                                                      score_kind=ae.anomaly_score))
        Z = located(ae.encode, seqs) if Z is None else Z
        written.append(plots.plot_embeddings(Z, out / "embeddings.png", labels))
    else:
        scores = ae.train_scores_
    written.append(plots.plot_scores(scores, out / "scores.png", ae.threshold_,
                                     score_kind=ae.anomaly_score))
    return written


def _training_facts(ae) -> list[tuple[str, Any]]:
    facts: list[tuple[str, Any]] = []
    cfg = ae.model_config_
    arch = (f"{cfg.encoder} encoder (hidden {cfg.hidden_size}"
            + (f", {cfg.depth} blocks" if cfg.encoder == "conv" else f", {cfg.cell}")
            + f"), {cfg.pooling} pooling, latent {cfg.latent_dim}, {cfg.decoder} decoder")
    facts.append(("model", arch))
    if ae.history_:
        facts.append(("training", f"{len(ae.history_)} epochs in "
                                  f"{ae.history_[-1]['time']:.1f}s; weights kept from the "
                                  + best_epoch_text(ae.history_)))
    facts.append(("anomaly threshold", f"{ae.threshold_:.5g} (the {1 - ae.contamination:.3g} "
                                       "quantile of the training scores)"))
    return facts


def _data_facts(seqs) -> list[tuple[str, Any]]:
    if isinstance(seqs, Texts):
        n = lengths_of(seqs)
        return [("data", f"{len(seqs)} texts, lengths {min(n)}-{max(n)}")]
    return [("data", f"{len(seqs)} sequences, {seqs.n_features} features, lengths "
                     f"{seqs.lengths.min()}-{seqs.lengths.max()} (mean "
                     f"{seqs.lengths.mean():.1f})")]


def cmd_plot(args: argparse.Namespace) -> int:
    from ..model_dir import is_model_folder
    from ..report import write_report
    from ..tables import ids_of

    out = Path(args.out)
    if is_model_folder(out):
        raise UsageError(f"{out} is a model folder: write the figures to another --out")
    ae, settings = load(args.model)
    seqs = labels = None
    if args.data is not None:
        data, _, labels, _ = data_for_model(args, ae, settings)
        seqs, labels = in_memory(data, labels)  # a folder: read whole, as figures need
        scores = located(ae.score, seqs)  # once, for the figures and the report
        per_step = _step_scores(ae, seqs, scores)
        ids, facts, lengths = ids_of(seqs), _data_facts(seqs), lengths_of(seqs)
    else:  # the training data's scores, saved with the model (no ids)
        scores, ids, lengths, per_step = ae.train_scores_, None, None, None
        facts = [("data", f"none given: scores of the {len(scores)} training sequences")]
    pngs = _write_plots(ae, out, seqs, labels, scores=scores, per_step=per_step)
    for p in pngs:
        log.info("wrote %s", p)
    page = write_report(out / "report.html", f"seqae model {args.model}",
                        facts + _training_facts(ae), pngs, ids=ids, scores=scores,
                        threshold=ae.threshold_, labels=labels, lengths=lengths,
                        files=[p.name for p in pngs], top=TOP, per_step=per_step)
    log.info("wrote %s", page)
    return 0


# The file that marks a folder as the demo's own (written first), so that a second demo
# may replace what the first wrote and nothing else.
DEMO_MARK = "seqae-demo.json"


def _check_demo_folder(out: Path) -> None:
    """Raise `DataFileError` unless ``out`` is absent, an empty folder, or a folder the
    demo wrote (it holds `DEMO_MARK`): the demo writes a dozen files there."""
    from ..errors import DataFileError

    if out.exists() and not out.is_dir():
        raise DataFileError(f"{out} is a file; --out names the folder the demo writes")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARK).is_file():
        raise DataFileError(f"{out} is a folder that the demo did not write (it has no "
                            f"{DEMO_MARK}); give an empty or new --out")


def cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from ..datasets import make_demo
    from ..io import atomic_write_text, write_table
    from ..report import write_report
    from ..tables import embeddings_table, scores_table

    out = Path(args.out)
    _check_demo_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / DEMO_MARK, json.dumps({"written_by": "seqae demo"}) + "\n")
    seqs, labels, truth = make_demo(n=args.n, seed=0)
    log.info("demo data: %s, classes %s, %d planted anomalies", seqs,
             sorted(set(labels.tolist())), int(truth.sum()))
    start = time.perf_counter()
    ae = fit(seqs, {"max_time": args.max_time, "max_epochs": 1000,
                    "contamination": float(truth.mean())}, args.quiet)
    fit_s = time.perf_counter() - start
    ae.save(out / "model")
    Z, scores = ae.encode(seqs), ae.score(seqs)
    write_table(embeddings_table(Z, seqs.ids, "id", labels, "label"),
                out / "embeddings.parquet")
    write_table(scores_table(scores, ae.threshold_, seqs.ids, seqs.lengths, "id", labels,
                             "label").append_column("planted_anomaly", [truth]),
                out / "scores.parquet")
    per_step = _step_scores(ae, seqs, scores)
    pngs = _write_plots(ae, out, seqs, labels, Z=Z, scores=scores, per_step=per_step)
    knn, k = _knn_accuracy(Z, labels), int(truth.sum())
    top = np.argsort(-scores)[:k]
    recall = float(truth[top].mean()) if k else float("nan")
    rel = float(scores.mean() / seqs.values.var(axis=0).mean())
    flagged, classes = int((scores > ae.threshold_).sum()), len(set(labels.tolist()))
    embedded = (f"1-nearest-neighbour class accuracy (leave-one-out) {knn:.3f} over "
                f"{classes} classes")
    found = (f"{truth[top].sum()} of the {k} highest scores are planted anomalies "
             f"(precision at {k}: {recall:.2f}); {flagged} flagged above the threshold")
    lines = [
        "# seqae demo report", "",
        f"- data: {len(seqs)} sequences, {seqs.n_features} features, lengths "
        f"{seqs.lengths.min()}-{seqs.lengths.max()} (mean {seqs.lengths.mean():.1f}), "
        f"{k} planted anomalies",
        f"- training: {len(ae.history_)} epochs in {fit_s:.1f}s; weights kept from the "
        + best_epoch_text(ae.history_),
        f"- reconstruction error (mean score / data variance): {rel:.3f}",
        f"- embeddings: {embedded}",
        f"- anomalies: {found} {ae.threshold_:.4g}", "",
        "Files: report.html (this report as one page), model/, embeddings.parquet, "
        "scores.parquet, " + ", ".join(p.name for p in pngs),
    ]
    facts = [*_data_facts(seqs), ("planted anomalies", k), *_training_facts(ae),
             ("reconstruction error (mean score / data variance)", f"{rel:.3f}"),
             ("embeddings", embedded), ("anomalies", found)]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    write_report(out / "report.html", "seqae demo report", facts, pngs, ids=seqs.ids,
                 scores=scores, threshold=ae.threshold_, labels=labels, lengths=seqs.lengths,
                 files=["model/", "embeddings.parquet", "scores.parquet", "report.md",
                        *(p.name for p in pngs)], top=TOP, per_step=per_step)
    if not args.quiet:
        _print_report(lines)
    return 0


def _knn_accuracy(Z, labels) -> float:
    import numpy as np

    Zs = (Z - Z.mean(0)) / (Z.std(0) + 1e-8)
    sq = (Zs**2).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * Zs @ Zs.T
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def _print_report(lines: list[str]) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    Console(stderr=False).print(Markdown("\n".join(lines)))
