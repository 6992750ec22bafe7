"""`SequenceAutoencoder`: the high-level, scikit-learn-compatible API."""

from __future__ import annotations

import copy
import csv
import hashlib
import inspect
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .batching import sorted_batches
from .data import Sequences
from .distributed import context
from .errors import IncompatibleModelError, SequenceDataError, describe
from .io import atomic_write_bytes, atomic_write_text
from .losses import get_loss, masked_mse
from .nn.encoders import conv_depth_for
from .nn.model import AutoencoderNet, ModelConfig
from .progress import Progress
from .scaling import Scaler
from .stream import ParquetSource, StreamData
from .train import Callback, DeviceData, TrainConfig, cpu_threads, resolve_device, train
from .vocab import UNK, CharVocab

__all__ = ["SequenceAutoencoder", "clone"]

log = logging.getLogger("seqae")

FORMAT_VERSION = 1
# validation_fraction="auto" holds out 10 % only when that is at least this many
# sequences: early stopping on 4 or 5 held-out sequences follows noise, not the model.
MIN_VALIDATION = 50
# encoder="auto": a median length above this many steps picks the convolutional encoder.
LONG = 100
# contrast="auto" with the convolutional encoder
CONV_CONTRAST = "hierarchical"
# copies="auto" for token data: weight of the random-string reconstruction term
TOKEN_COPIES = 0.5
# patch="auto": the convolutional encoder reads patches of about median length / this
# many steps, so that a typical sequence is about this many patches long.
PATCH_LENGTH = 512


MAX_LEN_POLICIES = ("refuse", "truncate", "window")
# threads="auto": on the CPU with OpenMP's threads sleeping between parallel regions
# (OMP_WAIT_POLICY=PASSIVE), a recurrent encoder this wide or narrower computes on one
# thread. Its per-step products are too small to split, and waking the sleeping threads
# for each of them costs more than it gains: a whole fit of the default GRU 64 took 2.9 x
# as long on 2 threads as on 1 (GRU 256: 1.25 x; GRU 512 and the convolutions: no gain
# from one thread). With threads that spin while they wait (OpenMP's default policy) the
# second thread costs nothing and gains up to 1.6 x, so torch's setting stays
# (benchmarks/threads.py, benchmarks/RESULTS.md).
ONE_THREAD_HIDDEN = 256
# fit on a ParquetSource: checkpoint every this many optimizer steps (with a
# checkpoint_dir), and fit the length head on the latents of this many sequences
STREAM_CHECKPOINT_EVERY = 200
LENGTH_HEAD_SAMPLE = 100_000


def _limit_lengths(X: Sequences, max_len: int | None,
                   policy: str) -> tuple[Sequences, np.ndarray | None]:
    """``(X', owner)``: ``X`` itself (owner None) when no sequence is longer than
    ``max_len``; else by ``policy``: ``"truncate"`` keeps the first ``max_len`` steps of
    each sequence (owner None), ``"window"`` cuts each sequence into the fewest windows of
    at most ``max_len`` steps, of near-equal sizes, in order (``owner[j]`` = the sequence
    window j came from); ``"refuse"`` raises `SequenceDataError` naming the sequence."""
    if policy not in MAX_LEN_POLICIES:
        raise ValueError(f"max_len_policy must be one of {MAX_LEN_POLICIES}, got {policy!r}")
    lengths = X.lengths
    if max_len is None or not len(lengths) or int(lengths.max()) <= max_len:
        return X, None
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    i = int(np.argmax(lengths > max_len))
    if policy == "refuse":
        raise SequenceDataError(
            f"{describe(i, X.ids)} has {int(lengths[i])} steps, more than max_len={max_len}: "
            "raise max_len, or set max_len_policy='truncate' (keep the first max_len steps) "
            "or 'window' (cut it into windows and put the results back together)",
            index=i, seq_id=None if X.ids is None else X.ids[i])
    if policy == "truncate":
        keep = np.minimum(lengths, max_len)
        steps = np.concatenate([np.arange(o, o + k) for o, k in zip(X.offsets[:-1], keep,
                                                                    strict=True)])
        offsets = np.concatenate([[0], np.cumsum(keep)])
        return Sequences(X.values[steps], offsets, ids=X.ids,
                         feature_names=X.feature_names), None
    parts = -(-lengths // max_len)  # windows per sequence
    owner = np.repeat(np.arange(len(lengths)), parts)
    first = np.concatenate([[0], np.cumsum(parts)[:-1]])
    k = np.arange(len(owner)) - first[owner]  # window number within its sequence
    base, extra = lengths[owner] // parts[owner], lengths[owner] % parts[owner]
    sizes = base + (k < extra)  # near-equal sizes, the longer ones first
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return Sequences(X.values, offsets, feature_names=X.feature_names), owner


def _per_owner(values: np.ndarray, weights: np.ndarray, owner: np.ndarray, n: int):
    """Weighted mean of the windows' ``values`` (rows) per sequence."""
    w = weights.astype(np.float64)
    out = np.zeros((n,) + values.shape[1:], dtype=np.float64)
    np.add.at(out, owner, values * w.reshape((-1,) + (1,) * (values.ndim - 1)))
    total = np.zeros(n)
    np.add.at(total, owner, w)
    return out / total.reshape((-1,) + (1,) * (values.ndim - 1))


class _PartialModel(Callback):
    """Writes the model as it stands after every epoch (see `SequenceAutoencoder.fit`)."""

    def __init__(self, est: SequenceAutoencoder, folder: Path):
        self.est, self.folder = est, folder
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, torch.Tensor] | None = None

    def on_best(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        self.best = state

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        if not self.history and epoch > 1:  # resumed: the past epochs' records
            self.history = _read_history(self.folder / "metrics.csv")
        self.history = [r for r in self.history if r["epoch"] < epoch] + [record]
        self.est._write(self.folder, self.history, partial_epoch=epoch, state=self.best)


def _is_texts(X: Any) -> bool:
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(t, str) for t in X)


def _as_sequences(X: Any) -> Sequences:
    if isinstance(X, Sequences):
        return X
    if isinstance(X, (list, tuple)):
        return Sequences.from_list(X)
    raise TypeError(
        f"expected seqae.Sequences or a list of arrays, got {type(X).__name__}; for a padded "
        "array use seqae.Sequences.from_padded(x, lengths=...)"
    )


class _Params:
    """get_params / set_params from the ``__init__`` signature (the sklearn contract)."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any):
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid: "
                    f"{sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if sig.parameters[k].default is not v and sig.parameters[k].default != v
        ]
        return f"{type(self).__name__}({', '.join(changed)})"


def clone(estimator: Any) -> Any:
    """A new, unfitted estimator with the same parameters (like ``sklearn.base.clone``)."""
    params = estimator.get_params(deep=False)
    return type(estimator)(**{k: copy.deepcopy(v) for k, v in params.items()})


class SequenceAutoencoder(_Params):
    """Recurrent autoencoder for variable-length sequences: continuous, tokens or texts.

    Continuous ``(T_i, F)`` sequences, integer token sequences (an embedding in, a softmax
    over the vocabulary out, masked cross-entropy) or a list of strings (a `CharVocab`
    is learned in `fit` as ``vocab_``; texts in, texts out). Each sequence is encoded to
    a fixed-size vector by a masked (bidirectional) RNN and decoded back at its own
    length; the loss is averaged over valid steps only. Continuous data are standardised
    per feature with statistics over valid steps, and every output is returned in the
    input's units.

    Args:
        latent_dim: embedding size; ``"auto"`` (default): 32 with the RNN; with the
            convolutional encoder its ``hidden_size`` (64): there the embedding is the
            max-pooled convolution outputs themselves, and the decoder reads it through
            a linear bottleneck of half that width.
        hidden_size: RNN units per direction (default 64).
        num_layers: stacked RNN layers (default 1).
        cell: ``"gru"`` or ``"lstm"`` (default ``"gru"``).
        bidirectional: bidirectional encoder (default True).
        pooling: encoder summary: ``"last"``, ``"mean"``, ``"max"`` or a ``"+"``-joined
            combination; ``"auto"`` (default): ``"max"`` with the convolutional encoder,
            ``"last"`` (the final states) with the RNN.
        encoder: ``"rnn"`` (the bidirectional ``cell``), ``"conv"`` (dilated residual
            convolutions, `seqae.nn.ConvEncoder`) or ``"auto"`` (default): ``"conv"`` when
            the median training length exceeds 100 steps, else ``"rnn"``.
        depth: convolution blocks; None (default) = the fewest whose receptive field
            covers the longest training sequence, counted in patches (at most 10).
        patch: the convolutional encoder reads patches of this many consecutive steps
            (`seqae.nn.patchify`), which divides its cost by as much; ``"auto"``
            (default): the median training length / `PATCH_LENGTH`, rounded (1 below
            that length); always 1 with the RNN.
        contrastive: weight of the crop-agreement term: the latent of a sequence and of
            a random crop of it (half to all of it) must pick each other out of the batch
            (InfoNCE); ``"auto"`` (default): 1 with the convolutional encoder, 0 with the
            RNN.
        contrast: what the crop-agreement term compares: ``"instance"`` (the latents of
            a sequence and of a crop of it) or ``"hierarchical"`` (the per-step outputs
            of two overlapping crops, step by step, at every time scale; conv encoder
            only); ``"auto"`` (default): ``"hierarchical"`` with the convolutional
            encoder, ``"instance"`` with the RNN.
        decoder: ``"repeat"`` (default): the latent fed at each step, or
            ``"autoregressive"``: each step also sees the previous one (teacher forcing in
            training, free-running at inference, stopping at EOS for tokens).
        position: position channels fed to the repeat decoder besides the latent:
            ``"fourier"`` (``t / (L - 1)`` plus sin/cos of it, default), ``"relative"``
            (``t / (L - 1)`` only) or ``"none"``.
        dropout: between stacked layers (default 0).
        token_dropout: autoregressive decoder on tokens: share of the previous tokens it
            sees that are hidden as <unk> during training (default 0).
        copies: token data (texts): weight of a second reconstruction term on random
            strings of the batch's lengths, so that the model learns to spell any string
            rather than to recall the training words; ``"auto"`` (default): 0.5 for
            tokens, 0 for continuous data (see `seqae.nn.ModelConfig`).
        loss: ``"mse"``, ``"mae"`` or ``"huber"`` (default ``"mse"``).
        normalize: ``"auto"`` (default), ``"global"`` (or True), ``"sequence"`` or
            ``"none"`` (or False); a `seqae.scaling.Scaler` is fitted as ``scaler_``.
            ``"global"`` standardises each feature with statistics over the training
            data's valid steps; ``"sequence"`` each sequence by its own per-feature mean
            and std, so that sequences whose scales differ by orders of magnitude weigh
            alike in the loss and the embedding describes shape only (`reconstruct` puts
            each sequence's level and scale back; `score` and `decode` are in
            standardised units); ``"auto"`` picks ``"sequence"`` when the per-sequence
            stds of a feature spread over more than two orders of magnitude, else
            ``"global"``.
        max_epochs: upper bound on epochs (default 100).
        max_time: training budget in seconds (default None: no limit).
        batch_size: typical sequences per batch (default 32).
        lr: learning rate; ``"auto"`` (default): 1e-3 with the convolutional encoder,
            3e-3 with the RNN.
        weight_decay: AdamW weight decay (default 0).
        grad_clip: max gradient norm (default 1.0).
        patience: early-stopping patience in epochs (default 10).
        validation_fraction: share of the training data held out for early stopping
            when ``fit`` gets no validation set; ``"auto"`` (default): 10 % when that is
            at least 50 sequences (500 or more in all), else none; 0 = none. Without
            held-out data the training loss is monitored.
        contamination: expected share of anomalies in the training data; sets
            ``threshold_``, the training-score quantile above which `is_anomaly` is True
            (default 0.01).
        unknown: for text input, a character outside the vocabulary learned in `fit`
            raises (``"error"``, default) or becomes ``<unk>`` (``"map"``).
        batching: ``"auto"``, ``"tokens"`` or ``"count"`` (see `seqae.batching`).
        accumulate: sum the gradients of this many batches before each optimizer step
            (default 1); the loss is normalised by the valid elements of all of them.
            Under ``torchrun`` each step takes this many batches per process, and the
            weights equal one process's with ``accumulate`` times the process count
            (`seqae.distributed`).
        schedule: the learning rate: ``"plateau"`` halves it when the monitored loss
            stalls; ``"budget"`` lowers it along a cosine to 5 % at the end of
            ``max_time`` (or ``max_epochs``), so that the last weights are settled ones
            (`seqae.train.TrainConfig`); ``"auto"`` (default): ``"budget"`` with the
            convolutional encoder and a ``max_time``, else ``"plateau"``.
        max_len: the longest sequence taken as it is (default 10,000 steps; None: no
            limit). Longer ones follow ``max_len_policy``.
        max_len_policy: ``"refuse"`` (default): an error naming the sequence and its
            length; ``"truncate"``: its first ``max_len`` steps only (`reconstruct`
            returns that many); ``"window"``: cut into windows of at most ``max_len``
            steps, trained on as sequences of their own, and put back together per
            sequence (embeddings averaged over the windows, weighted by length;
            reconstructions stitched; scores over every step), so memory stays bounded
            whatever the length.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``...
        threads: CPU threads torch computes on during `fit`, `encode`, `reconstruct`,
            `score` and `decode` (torch's own setting is put back after each call): an
            int; None leaves torch's setting alone; ``"auto"`` (default): one thread for
            a recurrent encoder of ``hidden_size`` up to `ONE_THREAD_HIDDEN` on the CPU
            when ``OMP_WAIT_POLICY=PASSIVE`` is set (its per-step products are too small
            to split, and waking sleeping threads for each made a whole fit of the
            default GRU 2.9 x slower on 2 cores: benchmarks/threads.py), else torch's
            setting.
        seed: random seed (default 0).
        verbose: what `fit` shows (`seqae.progress.Progress`): 1 (default) a live
            display on a terminal or in a notebook, one line per epoch when the output is
            not interactive; 2 one line per epoch always; 0 nothing.

    Example:
        >>> import numpy as np, seqae
        >>> rng = np.random.default_rng(0)
        >>> seqs = seqae.Sequences.from_list([rng.normal(size=(n, 2)) for n in (5, 9, 7)])
        >>> ae = seqae.SequenceAutoencoder(latent_dim=4, hidden_size=8, max_epochs=2)
        >>> ae.fit(seqs).encode(seqs).shape
        (3, 4)
    """

    threshold_: float | None  # None in a folder written during fit (no scores yet)

    def __init__(
        self,
        latent_dim: int | str = "auto",
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: str = "gru",
        bidirectional: bool = True,
        pooling: str = "auto",
        encoder: str = "auto",
        depth: int | None = None,
        patch: int | str = "auto",
        contrastive: float | str = "auto",
        contrast: str = "auto",
        decoder: str = "repeat",
        position: str = "fourier",
        dropout: float = 0.0,
        token_dropout: float = 0.0,
        copies: float | str = "auto",
        loss: str = "mse",
        normalize: bool | str = "auto",
        max_epochs: int = 100,
        max_time: float | None = None,
        batch_size: int = 32,
        accumulate: int = 1,
        schedule: str = "auto",
        lr: float | str = "auto",
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        patience: int = 10,
        validation_fraction: float | str = "auto",
        contamination: float = 0.01,
        unknown: str = "error",
        batching: str = "auto",
        max_len: int | None = 10_000,
        max_len_policy: str = "refuse",
        device: str = "auto",
        threads: int | str | None = "auto",
        seed: int = 0,
        verbose: int = 1,
    ):
        self.latent_dim = latent_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.encoder = encoder
        self.depth = depth
        self.patch = patch
        self.contrastive = contrastive
        self.contrast = contrast
        self.decoder = decoder
        self.position = position
        self.dropout = dropout
        self.token_dropout = token_dropout
        self.copies = copies
        self.loss = loss
        self.normalize = normalize
        self.max_epochs = max_epochs
        self.max_time = max_time
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.schedule = schedule
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.unknown = unknown
        self.batching = batching
        self.max_len = max_len
        self.max_len_policy = max_len_policy
        self.device = device
        self.threads = threads
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------ configs
    def _recipe(self, lengths: np.ndarray) -> dict[str, Any]:
        """``encoder``, ``pooling``, ``contrastive``, ``contrast`` and ``latent_dim`` with
        each ``"auto"`` resolved from the training lengths: sequences of more than `LONG`
        steps (median) get the convolutional encoder, max pooling, the hierarchical crop
        term and its pooled outputs as the embedding; shorter ones the bidirectional
        GRU's final states, plain reconstruction and a 32-number latent."""
        median = float(np.median(lengths)) if len(lengths) else 0.0
        long = median > LONG
        encoder = self.encoder if self.encoder != "auto" else ("conv" if long else "rnn")
        pooling = self.pooling if self.pooling != "auto" else (
            "max" if encoder == "conv" else "last")
        contrastive = self.contrastive if self.contrastive != "auto" else (
            1.0 if encoder == "conv" else 0.0)
        contrast = self.contrast if self.contrast != "auto" else (
            CONV_CONTRAST if encoder == "conv" else "instance")
        latent = self.latent_dim if self.latent_dim != "auto" else (
            self.hidden_size if encoder == "conv" else 32)
        patch = self.patch if self.patch != "auto" else (
            max(1, round(median / PATCH_LENGTH)) if encoder == "conv" else 1)
        return {"encoder": encoder, "pooling": pooling, "contrastive": float(contrastive),
                "contrast": contrast, "latent_dim": int(latent), "patch": int(patch)}

    def _threads(self) -> int | None:
        """The CPU threads this model computes on (``threads`` resolved; None: torch's)."""
        t = self.threads
        if t == "auto":
            cfg = self.model_config_
            if (self._device().type == "cpu" and cfg.encoder == "rnn"
                    and cfg.hidden_size <= ONE_THREAD_HIDDEN
                    and os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"):
                return 1
            return None
        _check_threads(t)
        return cast(int | None, t)

    def _lr(self) -> float:
        """``lr``, with ``"auto"`` resolved for the fitted encoder."""
        if self.lr != "auto":
            return float(self.lr)
        return 1e-3 if self.model_config_.encoder == "conv" else 3e-3

    def _model_config(self, n_features: int, max_length: int,
                      recipe: dict[str, Any]) -> ModelConfig:
        # The conv encoder's max-pooled outputs are the embedding (they are what the crop
        # term trains: issue 11's probes, OSULeaf 0.81 against 0.70 for a linear map of
        # them), and the decoder reads them through a bottleneck of half their width.
        pooled = recipe["encoder"] == "conv" and "+" not in recipe["pooling"] and (
            recipe["pooling"] != "blocks" or self.latent_dim == "auto")
        depth = self.depth if self.depth is not None else conv_depth_for(
            -(-max_length // recipe["patch"]))
        bottleneck = max(1, recipe["latent_dim"] // 2) if pooled else 0
        if recipe["pooling"] == "blocks" and self.latent_dim == "auto":
            # every block's pooled channels are the embedding; the decoder reads them
            # through the default's bottleneck width
            recipe = {**recipe, "latent_dim": self.hidden_size * depth}
            bottleneck = max(1, self.hidden_size // 2)
        return ModelConfig(
            n_features=n_features,
            pooled_latent=pooled,
            bottleneck=bottleneck,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            cell=self.cell,
            bidirectional=self.bidirectional,
            depth=depth,
            **recipe,
            dropout=self.dropout,
            decoder=self.decoder,
            position=self.position,
            max_length=4 * max_length,
            token_dropout=self.token_dropout,
        )

    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            max_epochs=self.max_epochs,
            max_time=self.max_time,
            batch_size=self.batch_size,
            lr=self._lr(),
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            patience=self.patience,
            batching=self.batching,
            seed=self.seed,
            accumulate=self.accumulate,
            schedule=self._schedule(),
        )

    def _schedule(self) -> str:
        """``schedule``, with ``"auto"`` resolved: a cosine over the time budget for the
        convolutional encoder when there is one (``max_time``), else halving on plateaus."""
        if self.schedule != "auto":
            return self.schedule
        conv = self.model_config_.encoder == "conv"
        return "budget" if conv and self.max_time is not None else "plateau"

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: Sequences | list,
        y: Any = None,
        validation: Sequences | list | None = None,
        callbacks: list[Callback] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        checkpoint_every: int | None = None,
    ) -> SequenceAutoencoder:
        """Train on ``X``; returns ``self``.

        Args:
            X: training sequences (continuous or tokens, or texts), or a
                `seqae.stream.ParquetSource` to stream from files larger than memory.
            y: ignored (sklearn compatibility).
            validation: optional validation sequences for early stopping; without them,
                ``validation_fraction`` of ``X`` is held out at random.
            callbacks: optional `seqae.train.Callback` instances.
            checkpoint_dir: write there after every epoch a resumable checkpoint
                (`seqae.checkpoint`) and the model so far (`load` reads it: the best
                epoch's weights so far, no training scores or threshold until fit ends).
            resume: continue from the newest valid checkpoint in ``checkpoint_dir``
                (none: start afresh). The result equals an uninterrupted run with the
                same seed (without ``max_time``, which stops on the clock); other data
                or settings are refused, naming what differs.
            checkpoint_every: with ``checkpoint_dir``, also checkpoint every this many
                optimizer steps inside an epoch, so that a resume continues mid-epoch
                (default: 0 for data in memory, `STREAM_CHECKPOINT_EVERY` for a source).
        """
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        if isinstance(X, ParquetSource):
            return self._fit_stream(X, validation, callbacks, checkpoint_dir, resume,
                                    STREAM_CHECKPOINT_EVERY if checkpoint_every is None
                                    else checkpoint_every)
        self.vocab_ = CharVocab.from_texts(cast(list, X)) if _is_texts(X) else None
        X = self._limit(self._sequences(X))[0]
        if validation is not None:
            validation = self._limit(self._sequences(validation))[0]
        get_loss(self.loss)  # validate the name before any work
        _check_threads(self.threads)
        scaler = Scaler(self.normalize)  # validates the mode before any work
        progress = Progress(self.verbose, self.max_epochs, self.max_time)  # validates it
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            rng = np.random.default_rng(self.seed)
            train_seqs, val_seqs = X, None
            if validation is not None:
                val_seqs = validation
                if val_seqs.is_tokens != X.is_tokens or val_seqs.n_features != X.n_features:
                    raise SequenceDataError(
                        f"validation data ({val_seqs!r}) do not match the training data "
                        f"({X!r})"
                    )
            elif (n_val := self._n_validation(len(X))):
                perm = rng.permutation(len(X))
                val_seqs, train_seqs = X.take(perm[:n_val]), X.take(perm[n_val:])
            self.n_features_in_ = X.n_features
            self.feature_names_in_ = X.feature_names
            self.vocab_size_ = 0
            if X.is_tokens:
                self.vocab_size_ = (len(self.vocab_) if self.vocab_ is not None
                                    else max(int(X.values.max()) + 1, UNK + 1))
                if validation is not None:
                    self._check_features(validation)
                self.scaler_ = None  # tokens are not scaled
            else:
                self.scaler_ = scaler.fit(train_seqs)
            self.max_length_ = int(X.lengths.max())
            recipe = self._recipe(train_seqs.lengths)
            if X.is_tokens and self.patch == "auto":
                recipe["patch"] = 1  # token ids are embedded one by one
            self.model_config_ = self._model_config(X.n_features, self.max_length_, recipe)
            self.model_config_.vocab_size = self.vocab_size_
            if X.is_tokens:  # random strings to copy: the model must spell, not recall
                self.model_config_.copies = float(TOKEN_COPIES if self.copies == "auto"
                                                  else self.copies)
            self.module_ = AutoencoderNet(self.model_config_).to(device)
            train_data = DeviceData(self._scale(train_seqs)[0], device)
            val_data = None if val_seqs is None else DeviceData(self._scale(val_seqs)[0], device)
            self._train(train_data, val_data, self._fingerprint(X, validation), callbacks,
                        checkpoint_dir, resume, checkpoint_every or 0, progress)
        # One inference pass over the training data gives both the latents for the
        # length head (for decode without lengths: a least-squares fit of log length on
        # the final latents, exact) and the training scores (for the threshold).
        Z, self.train_scores_ = self._encode_score(train_seqs, latents=True, scores=True)
        self.module_.length_head.fit_least_squares(
            torch.as_tensor(Z, device=device), torch.as_tensor(train_seqs.lengths, device=device)
        )
        self.threshold_ = self.threshold_for(self.contamination)
        return self

    def _fingerprint(self, X: Sequences, validation: Sequences | None) -> dict[str, Any]:
        """What a resumed fit must share with the one that wrote the checkpoint."""
        digest = hashlib.sha256()
        for seqs in (X, validation):
            if seqs is not None:
                digest.update(np.ascontiguousarray(seqs.values).tobytes())
                digest.update(np.ascontiguousarray(seqs.offsets).tobytes())
        return {"data_sha256": digest.hexdigest(), "sequences": len(X),
                "validation": None if validation is None else len(validation),
                **self._settings()}

    def _settings(self) -> dict[str, Any]:
        """The parameters a resumed fit must share (not how it shows progress or where)."""
        return {k: v for k, v in self.get_params().items()
                if k not in ("verbose", "device", "threads")}

    def _train(self, train_data, val_data, fingerprint: dict[str, Any],
               callbacks: list[Callback] | None, checkpoint_dir: str | Path | None,
               resume: bool, checkpoint_every: int, progress: Progress) -> None:
        """Run `seqae.train.train` on prepared data, with the checkpointer, the model
        written along the way and the progress display (rank 0 alone writes and shows)."""
        ctx = context()
        checkpointer = None
        extra: list[Callback] = []
        if checkpoint_dir is not None:
            from .checkpoint import Checkpointer

            checkpointer = Checkpointer(checkpoint_dir, fingerprint)
            if ctx.main:
                extra.append(_PartialModel(self, Path(checkpoint_dir)))
        if ctx.main:
            extra.append(progress)
        config = self._train_config()
        config.checkpoint_every = checkpoint_every
        with cpu_threads(self._threads()):
            self.history_ = train(self.module_, get_loss(self.loss), train_data, config,
                                  val_data, [*(callbacks or []), *extra],
                                  checkpointer=checkpointer, resume=resume)

    def _fit_stream(self, source: ParquetSource, validation: Any, callbacks: list[Callback] | None,
                    checkpoint_dir: str | Path | None, resume: bool,
                    checkpoint_every: int) -> SequenceAutoencoder:
        """`fit` on a `seqae.stream.ParquetSource`: the data are read window by window
        (see `seqae.stream`); the validation share is made of whole chunks."""
        if self.max_len is not None:  # the index knows every length: refuse before work
            if self.max_len_policy != "refuse":
                raise ValueError(f"max_len_policy={self.max_len_policy!r} applies to data in "
                                 "memory; a ParquetSource is read as it is (cut long "
                                 "sequences when writing the files, or set max_len=None)")
            for chunk in source.index():
                if int(chunk.lengths.max()) > self.max_len:
                    i = int(np.argmax(chunk.lengths > self.max_len))
                    raise SequenceDataError(
                        f"{source._where(chunk)}: sequence {chunk.ids[i]!r} has "
                        f"{int(chunk.lengths[i])} steps, more than max_len={self.max_len}: "
                        "raise max_len (or None) to train on it", seq_id=chunk.ids[i])
        if validation is not None and not isinstance(validation, ParquetSource):
            raise TypeError("with a ParquetSource, validation must be a ParquetSource too, "
                            f"not {type(validation).__name__}")
        get_loss(self.loss)
        _check_threads(self.threads)
        scaler = Scaler(self.normalize)
        progress = Progress(self.verbose, self.max_epochs, self.max_time)
        device = resolve_device(self.device)
        chunks = source.index()
        self.vocab_ = None
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            rng = np.random.default_rng(self.seed)
            train_ids, val_ids = list(range(len(chunks))), []
            if validation is not None:
                validation.index()
                if validation.n_features != source.n_features:
                    raise SequenceDataError(f"validation data ({validation!r}) do not match "
                                            f"the training data ({source!r})")
                val_ids = list(range(len(validation.index())))
            elif (n_val := self._n_validation(len(source))) and len(chunks) >= 2:
                held = 0  # whole chunks, at random, until they hold n_val sequences
                for c in rng.permutation(len(chunks))[:-1].tolist():
                    val_ids.append(c)
                    held += len(chunks[c].lengths)
                    if held >= n_val:
                        break
                train_ids = [c for c in train_ids if c not in set(val_ids)]
            self.n_features_in_ = source.n_features
            self.feature_names_in_ = list(source.features)
            self.vocab_size_ = 0
            mean, std, seq_std = source.stats(train_ids)
            self.scaler_ = scaler.fit_stats(mean, std, seq_std)
            lengths = np.concatenate([chunks[c].lengths for c in train_ids])
            self.max_length_ = int(source.lengths.max())
            self.model_config_ = self._model_config(source.n_features, self.max_length_,
                                                    self._recipe(lengths))
            self.module_ = AutoencoderNet(self.model_config_).to(device)
            train_data = StreamData(source, train_ids, self.scaler_, device)
            val_data = None
            if val_ids:
                val_data = StreamData(validation or source, val_ids, self.scaler_, device)
            fingerprint = {"data": source.signature(), "validation": None if validation is None
                           else validation.signature(), "held_out_chunks": val_ids,
                           **self._settings()}
            self._train(train_data, val_data, fingerprint, callbacks, checkpoint_dir, resume,
                        checkpoint_every, progress)
        # one pass over the training chunks: every training score (the threshold), and
        # the latents of the first LENGTH_HEAD_SAMPLE sequences (the length head)
        scores: list[np.ndarray] = []
        latents: list[np.ndarray] = []
        lens: list[np.ndarray] = []
        for seqs, _ in source.windows(train_ids):
            keep = sum(len(z) for z in latents) < LENGTH_HEAD_SAMPLE
            Z, sc = self._encode_score(seqs, latents=keep, scores=True)
            scores.append(sc)
            if Z is not None:
                latents.append(Z)
                lens.append(seqs.lengths)
        self.train_scores_ = np.concatenate(scores)
        self.module_.length_head.fit_least_squares(
            torch.as_tensor(np.concatenate(latents), device=device),
            torch.as_tensor(np.concatenate(lens), device=device))
        self.threshold_ = self.threshold_for(self.contamination)
        return self

    def _n_validation(self, n: int) -> int:
        """How many of ``n`` training sequences to hold out for early stopping."""
        if self.validation_fraction == "auto":
            n_val = int(round(0.1 * n))
            return n_val if n_val >= MIN_VALIDATION else 0
        if not self.validation_fraction or n < 10:
            return 0
        return max(1, int(round(float(self.validation_fraction) * n)))

    def threshold_for(self, contamination: float) -> float:
        """The score above which a share ``contamination`` of the training data lies."""
        self._check_fitted()
        if not 0.0 <= contamination < 1.0:
            raise ValueError(f"contamination must be in [0, 1), got {contamination}")
        return float(np.quantile(self.train_scores_, 1.0 - contamination))

    def is_anomaly(self, X: Sequences | list, threshold: float | None = None) -> np.ndarray:
        """``(N,)`` bool: score above ``threshold`` (default ``threshold_``)."""
        return self.score(X) > (self.threshold_ if threshold is None else threshold)

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted yet: call fit() or load() first"
            )

    def _sequences(self, X: Any) -> Sequences:
        """`Sequences` from what the user passed (texts go through ``vocab_``)."""
        if _is_texts(X):
            vocab = getattr(self, "vocab_", None)
            if vocab is None:
                raise SequenceDataError("this model was not fitted on texts; pass Sequences")
            return vocab.encode(X, unknown=self.unknown)
        return _as_sequences(X)

    def _check_features(self, X: Sequences) -> None:
        if self.vocab_size_:
            if not X.is_tokens:
                raise SequenceDataError(
                    f"the model was fitted on tokens; the data have {X.n_features} features"
                )
            bad = np.flatnonzero(X.values >= self.vocab_size_)
            if len(bad):
                i = int(np.searchsorted(X.offsets, bad[0], side="right") - 1)
                raise SequenceDataError(
                    f"{describe(i, X.ids)} has token {X.values[bad[0]]} at step "
                    f"{bad[0] - X.offsets[i]}, outside the vocabulary (0..{self.vocab_size_ - 1})",
                    index=i,
                )
            return
        if X.is_tokens or X.n_features != self.n_features_in_:
            got = "tokens" if X.is_tokens else f"{X.n_features} features"
            raise SequenceDataError(
                f"the model was fitted on {self.n_features_in_} features; the data have {got}"
            )

    def _device(self) -> torch.device:
        return next(self.module_.parameters()).device

    def _batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        return sorted_batches(lengths, max(4 * self.batch_size, 64), "count")

    @property
    def latent_dim_(self) -> int:
        """Size of the embeddings `encode` returns (``latent_dim`` resolved)."""
        self._check_fitted()
        return self.model_config_.latent_dim

    @property
    def mean_(self) -> np.ndarray | None:
        """``(F,)`` feature means used for standardisation (None for tokens)."""
        return None if self.scaler_ is None else self.scaler_.mean_

    @property
    def std_(self) -> np.ndarray | None:
        """``(F,)`` feature stds used for standardisation (None for tokens)."""
        return None if self.scaler_ is None else self.scaler_.std_

    def _scale(self, X: Sequences):
        """``(X standardised by scaler_, per-sequence (mean, std))``; tokens pass as they
        are, with None."""
        if X.is_tokens:
            return X, None
        assert self.scaler_ is not None  # continuous data always have one
        return self.scaler_.transform(X)

    @torch.no_grad()
    def _run(self, X: Sequences, fn):
        """Call ``fn(idx, x, lengths)`` on length-sorted batches of standardised data;
        returns the per-sequence ``(mean, std)`` the scaler used (None for tokens)."""
        self._check_fitted()
        self._check_features(X)
        self.module_.eval()
        X, stats = self._scale(X)
        data = DeviceData(X, self._device())
        with cpu_threads(self._threads()):
            for idx in self._batches(X.lengths):
                x, lens = data.batch(idx)
                fn(idx, x, lens)
        return stats

    def _limit(self, X: Sequences) -> tuple[Sequences, np.ndarray | None]:
        """``X`` under the ``max_len`` policy: ``(X', owner)`` (see `_limit_lengths`)."""
        return _limit_lengths(X, self.max_len, self.max_len_policy)

    def encode(self, X: Sequences | list | ParquetSource) -> np.ndarray:
        """``(N, latent_dim)`` embeddings, in the input's order (a `ParquetSource`'s
        index order; `seqae.stream.write_outputs` streams them to a file instead)."""
        if isinstance(X, ParquetSource):
            return np.concatenate([self.encode(seqs) for seqs, _ in X.windows()])
        X = self._sequences(X)
        Xw, owner = self._limit(X)
        Z = self._encode_score(Xw, latents=True)[0]
        if owner is None:
            return Z
        return _per_owner(Z, Xw.lengths, owner, len(X)).astype(np.float32)

    def _encode_score(self, X: Sequences, latents: bool = False, scores: bool = False):
        """``(Z or None, scores or None)`` in one inference pass: each batch is encoded
        once, and its latents are decoded for the scores."""
        self._check_fitted()
        Z = np.empty((len(X), self.latent_dim_), dtype=np.float32) if latents else None
        out = np.empty(len(X), dtype=np.float64) if scores else None
        scale = None if self.scaler_ is None else torch.as_tensor(self.scaler_.score_scale,
                                                                   device=self._device())

        def fn(idx, x, lens):
            if scores and self.vocab_size_:
                err, z, _ = self.module_.loss(x, lens, None, reduction="sequence")
            else:
                z = self.module_.encode(x, lens)
                if scores:
                    assert scale is not None  # continuous data have a scaler
                    rec = self.module_.decode(z, lens, x.shape[1])
                    err = masked_mse(rec * scale, x * scale, lens, reduction="sequence")
            if Z is not None:
                Z[idx] = z.cpu().numpy()
            if out is not None:
                out[idx] = err.double().cpu().numpy()

        with torch.no_grad():
            self._run(X, fn)
        return Z, out

    transform = encode

    def fit_transform(self, X: Sequences | list, y: Any = None, **fit_params) -> np.ndarray:
        return self.fit(X, **fit_params).encode(X)

    def _scatter(self, out: np.ndarray, offsets: np.ndarray, idx, y: np.ndarray, lens) -> None:
        """Write the valid steps of padded batch ``y`` into flat ``out``."""
        mask = np.arange(y.shape[1])[None, :] < np.asarray(lens)[:, None]
        flat = (offsets[idx][:, None] + np.arange(y.shape[1])[None, :])[mask]
        out[flat] = y[mask]

    def reconstruct(self, X: Sequences | list) -> Sequences | list[str]:
        """Reconstructions at each input's own length, in the input's units (free-running
        for an autoregressive decoder). Texts in, texts out."""
        texts = _is_texts(X)
        full = self._sequences(X)
        seqs, owner = self._limit(full)
        values = np.empty_like(seqs.values)

        def fn(idx, x, lens):
            y = self.module_.reconstruct(x, lens).cpu().numpy()
            self._scatter(values, seqs.offsets, idx, y, lens.cpu().numpy())

        stats = self._run(seqs, fn)
        rec = seqs.with_values(values)
        if stats is not None:
            assert self.scaler_ is not None
            rec = self.scaler_.inverse(rec, stats)
        if owner is not None:  # windows are consecutive slices: stitch them back
            rec = full.with_values(rec.values)
        if texts:
            assert self.vocab_ is not None
            return self.vocab_.decode(rec)
        return rec

    def score(self, X: Sequences | list | ParquetSource) -> np.ndarray:
        """``(N,)`` anomaly scores, higher = more anomalous. Continuous data: mean squared
        error of `reconstruct` over each sequence's valid steps and features, in the
        input's units (when the scaler standardises each sequence, in each sequence's
        standardised units: see `seqae.scaling.Scaler.score_scale`). Tokens: mean
        cross-entropy per valid token (and the EOS)."""
        if isinstance(X, ParquetSource):
            return np.concatenate([self.score(seqs) for seqs, _ in X.windows()])
        X = self._sequences(X)
        Xw, owner = self._limit(X)
        scores = self._encode_score(Xw, scores=True)[1]
        if owner is None:
            return scores
        return _per_owner(scores, Xw.lengths, owner, len(X))

    def decode(self, Z: Any, lengths: Any = None, max_length: int | None = None) -> Sequences:
        """Decode latent vectors into sequences.

        Args:
            Z: ``(N, latent_dim)`` embeddings (e.g. from `encode`).
            lengths: an int (every output that long) or ``(N,)`` lengths; None lets the
                model choose: tokens stop at EOS, continuous data take the lengths the
                length head predicts from each latent.
            max_length: most steps when tokens decode to EOS (default twice the longest
                training sequence).

        Returns:
            `Sequences` in the input's units (token ids for tokens; ``vocab_.decode``
            turns them into texts).
        """
        self._check_fitted()
        with cpu_threads(self._threads()):
            return self._decode(Z, lengths, max_length)

    @torch.no_grad()
    def _decode(self, Z: Any, lengths: Any, max_length: int | None) -> Sequences:
        z_all = torch.as_tensor(np.asarray(Z, dtype=np.float32))
        if z_all.dim() != 2 or z_all.shape[1] != self.latent_dim_:
            raise ValueError(f"Z must be (N, {self.latent_dim_}), got {tuple(z_all.shape)}")
        n = z_all.shape[0]
        dev = self._device()
        net = self.module_.eval()
        if lengths is not None:
            lens_all = np.broadcast_to(np.asarray(lengths, dtype=np.int64), (n,)).copy()
            bad = np.flatnonzero(lens_all < 1)
            if len(bad):
                raise SequenceDataError(
                    f"requested length {lens_all[bad[0]]} for sequence {bad[0]}: lengths must "
                    "be >= 1",
                    index=int(bad[0]),
                )
        elif self.vocab_size_:  # free-running to EOS: lengths come out of the decoding
            cap = max_length or 2 * self.max_length_
            outs = []
            for i in range(0, n, 512):
                tok, ln = net.generate(z_all[i : i + 512].to(dev), cap)
                outs += [t[: int(k)].cpu().numpy() for t, k in zip(tok, ln, strict=True)]
            return Sequences.from_list(outs)
        else:
            lens_all = net.length_head.predict(z_all.to(dev)).cpu().numpy()
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens_all, out=offsets[1:])
        if self.vocab_size_:
            values = np.empty(offsets[-1], dtype=np.int64)
        else:
            values = np.empty((offsets[-1], self.n_features_in_), dtype=np.float32)
        for idx in self._batches(lens_all):
            lens = torch.as_tensor(lens_all[idx], device=dev)
            y = net.decode(z_all[idx].to(dev), lens).cpu().numpy()
            self._scatter(values, offsets, idx, y, lens_all[idx])
        out = Sequences(values, offsets, feature_names=self.feature_names_in_)
        if self.vocab_size_:
            return out
        # in the training data's units ("global"), or standardised ("sequence": a latent
        # carries no level or scale to put back)
        f = self.n_features_in_
        assert self.scaler_ is not None
        return self.scaler_.inverse(out, (np.broadcast_to(self.scaler_.mean_, (n, f)),
                                          np.broadcast_to(self.scaler_.std_, (n, f))))

    # ------------------------------------------------------------------ modules
    @property
    def encoder_(self) -> torch.nn.Module:
        """The fitted encoder: ``(x (B, T, F) normalised, lengths) -> (B, latent_dim)``."""
        self._check_fitted()
        return self.module_.encoder

    @property
    def decoder_(self) -> torch.nn.Module:
        """The fitted decoder: ``(z (B, latent_dim), lengths) -> (B, T, F)`` normalised."""
        self._check_fitted()
        return self.module_.decoder

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to directory ``path`` (created if needed).

        Files: ``weights.safetensors``, ``config.json`` (parameters, architecture,
        normalisation statistics, feature names, versions, weights checksum) and
        ``metrics.csv`` (the history). Each file is written atomically; ``config.json``
        last, so a directory is complete once it holds a config naming its weights.
        """
        self._check_fitted()
        return self._write(path)

    def _write(self, path: str | Path, history: list[dict[str, Any]] | None = None,
               partial_epoch: int | None = None,
               state: dict[str, torch.Tensor] | None = None) -> Path:
        """`save`; with ``partial_epoch``, the model of a running fit after that epoch:
        the weights ``state`` (the best epoch's so far; the current ones when None), no
        training scores or threshold yet."""
        from safetensors.torch import save

        history = self.history_ if history is None else history
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = self.module_.state_dict() if state is None else state
        blob = save({k: v.detach().cpu().contiguous() for k, v in state.items()})
        atomic_write_bytes(path / "weights.safetensors", blob)
        if history:
            buf = io.StringIO()
            keys = list(dict.fromkeys(k for rec in history for k in rec))
            w = csv.DictWriter(buf, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
            atomic_write_text(path / "metrics.csv", buf.getvalue())
        config = {
            "format_version": FORMAT_VERSION,
            "kind": "SequenceAutoencoder",
            "seqae_version": _version(),
            "torch_version": torch.__version__,
            "params": self.get_params(),
            "model": self.model_config_.to_dict(),
            "n_features": self.n_features_in_,
            "feature_names": self.feature_names_in_,
            "scaler": None if self.scaler_ is None else self.scaler_.to_dict(),
            "vocab_size": self.vocab_size_,
            "vocab": None if self.vocab_ is None else self.vocab_.to_dict(),
            "max_length": self.max_length_,
            "train_scores": None if partial_epoch else self.train_scores_.tolist(),
            "threshold": None if partial_epoch else self.threshold_,
            "partial": None if partial_epoch is None else {
                "epoch": partial_epoch,
                "note": "written during fit: the best weights up to this epoch, no "
                        "training scores or threshold yet"},
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
        }
        atomic_write_text(path / "config.json", json.dumps(config, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> SequenceAutoencoder:
        """Load a model written by `save`. Never unpickles anything."""
        from safetensors.torch import load

        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise IncompatibleModelError(f"{path} is not a seqae model directory (no config.json)")
        try:
            config = json.loads(cfg_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise IncompatibleModelError(f"{cfg_file} is not valid JSON: {e}") from None
        version = config.get("format_version")
        if config.get("kind") != cls.__name__ or version != FORMAT_VERSION:
            raise IncompatibleModelError(
                f"{path} holds a {config.get('kind')!r} model in format {version!r}; this seqae "
                f"({_version()}) reads {cls.__name__} format {FORMAT_VERSION}"
            )
        blob = (path / "weights.safetensors").read_bytes()
        if hashlib.sha256(blob).hexdigest() != config["weights_sha256"]:
            raise IncompatibleModelError(
                f"{path}/weights.safetensors does not match config.json (checksum differs): "
                "the directory was modified or partly written"
            )
        params = dict(config["params"])
        params["device"] = device
        est = cls(**params)
        est.n_features_in_ = config["n_features"]
        est.feature_names_in_ = config["feature_names"]
        est.scaler_ = _read_scaler(config)
        est.vocab_size_ = config["vocab_size"]
        est.vocab_ = None if config["vocab"] is None else CharVocab.from_dict(config["vocab"])
        est.max_length_ = config["max_length"]
        # a folder written during fit (see `fit`'s checkpoint_dir) has no scores yet
        est.train_scores_ = np.asarray(config.get("train_scores") or [], np.float64)
        est.threshold_ = None if config.get("threshold") is None else float(config["threshold"])
        est.model_config_ = ModelConfig(**config["model"])
        est.module_ = AutoencoderNet(est.model_config_)
        est.module_.load_state_dict(load(blob))
        est.module_.to(resolve_device(device)).eval()
        est.history_ = _read_history(path / "metrics.csv")
        return est


def _check_threads(threads: Any) -> None:
    if threads in ("auto", None):
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be 'auto', None or a positive int, got {threads!r}")


def _read_scaler(config: dict[str, Any]) -> Scaler | None:
    """The fitted scaler of a config; folders written before the scaler had its own
    entry hold global statistics as ``mean`` / ``std`` (zeros and ones for per-sequence
    standardisation), which is what a "global" or "sequence" scaler holds."""
    if "scaler" in config:
        return None if config["scaler"] is None else Scaler.from_dict(config["scaler"])
    if config.get("mean") is None:  # tokens
        return None
    mode = config["params"].get("normalize", True)
    resolved = "sequence" if mode == "sequence" else ("global" if mode else "none")
    return Scaler.from_dict({"mode": mode, "mode_": resolved, "spread": 1.0,
                             "mean": config["mean"], "std": config["std"]})


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


def _version() -> str:
    from . import __version__

    return __version__
