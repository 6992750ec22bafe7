"""`SequenceAutoencoder`: the scikit-learn-compatible estimator, a thin orchestrator.

`fit` is a dozen named steps, the same for data in memory and streamed from files:
validate every parameter (`seqae.params`), wrap the input as a source and pick the task
(`seqae.sources`, `seqae.tasks`) under the length policy (`seqae.lengths`), split off
validation, fit the task's statistics, resolve every "auto" (`seqae.recipe`), build the
model, train (`seqae.train`), one inference pass for the length head and the threshold
(`seqae.inference`), then commit every fitted attribute at once. Nothing is learned on
the estimator before that last step: a fit that raises, or that Ctrl-C interrupts,
leaves it as it was (unfitted, or the earlier fit whole); checkpoints written on the
way stay on disk for ``resume``. The model folder is `seqae.model_dir`'s.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch

from . import inference, model_dir, recipe
from .data import Sequences
from .distributed import context
from .lengths import LengthPolicy, interpolate_gaps
from .losses import get_loss
from .model_dir import Fitted
from .neighbours import REFERENCE, Neighbours, Reservoir
from .nn.model import AutoencoderNet
from .params import validate
from .progress import Progress
from .sources import chunks_of, from_input
from .train import Callback, cpu_threads, resolve_device, train
from .vocab import CharVocab

__all__ = ["SequenceAutoencoder", "clone", "MAD_K"]

log = logging.getLogger("seqae")

PROBE = 32  # training sequences scored to time the pass after training (`max_time`)
# anomaly_score="neighbours": seconds per reference pair and dimension that the
# leave-one-out distances take, about twice the measured (20,000 x 64: 4.5 s on 2 cores)
LOO_SECONDS = 3e-10

# threshold_rule="mad": the threshold is the training scores' median plus this many robust
# standard deviations (1.4826 x MAD; Iglewicz & Hoaglin's modified z-score cut-off)
MAD_K = 3.5
# fit: the length head is fitted on the latents of at most this many training sequences
# (all of them for data in memory; the first ones read for a folder)
LENGTH_HEAD_SAMPLE = 100_000


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
        loss_normalize: how the masked training loss of a step is normalised:
            ``"element"`` (default) the mean over every valid element of the step, so
            that a sequence weighs as much as it has elements; ``"sequence"`` the mean
            over the step's sequences of each one's own mean over its valid elements,
            so that every sequence weighs the same. ``sample_weight`` in `fit` weighs
            each sequence's term; the validation loss uses the same normalisation,
            unweighted (docs: defaults).
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
        max_time: time budget of the whole `fit` call in seconds (default None: no
            limit): reading the data, training, validation and the scoring after
            training all keep within it (about 10 % + a few seconds over at most).
            Training gets what reading leaves, less `seqae.recipe.POST_SHARE` of the
            budget; each epoch's validation pass counts in it; when scoring every
            training sequence would not fit what is left, the threshold and the length
            head come from a random sample of them (at least
            `seqae.recipe.MIN_SCORED`; ``n_train_sequences_`` and ``train_scores_``
            say how many of how many).
        batch_size: typical sequences per batch (default 32).
        lr: learning rate; ``"auto"`` (default): 1e-3 with the convolutional encoder,
            3e-3 with the RNN.
        weight_decay: AdamW weight decay (default 0).
        grad_clip: max gradient norm (default 1.0).
        patience: early-stopping patience in epochs (default 10).
        validation_fraction: share of the training data held out for early stopping
            when ``fit`` gets no validation set; ``"auto"`` (default): 10 % when that is
            at least 50 sequences (500 or more in all), at most
            `seqae.recipe.MAX_VALIDATION` (5,000), else none; 0 = none. Without
            held-out data the training loss is monitored.
        contamination: expected share of anomalies in the training data; sets
            ``threshold_``, the training-score quantile above which `is_anomaly` is True
            (default 0.01), under ``threshold_rule="quantile"``.
        threshold_rule: how ``threshold_`` comes from the training scores:
            ``"quantile"`` (default): their ``1 - contamination`` quantile;
            ``"mad"``: no share to guess, a robust outlier rule: the median plus
            `MAD_K` (3.5) robust standard deviations (1.4826 x the median absolute
            deviation from the median; Iglewicz and Hoaglin's modified z-score above
            3.5), which a few anomalies in the training data barely move. When over
            half the training scores are equal (the MAD is 0), 1.2533 x their mean
            absolute deviation from the median stands in for the robust standard
            deviation (so not every score above the tie is flagged). Saved in the
            model's config and shown by ``seqae info``.
        anomaly_score: what `score`, ``train_scores_`` and ``threshold_`` measure:
            ``"reconstruction"`` (default): the reconstruction error (per step too);
            ``"neighbours"``: the distance of a sequence's embedding to the nearest
            embedding of the training data (`seqae.neighbours`; every dimension
            standardised by the training embeddings; at most
            `seqae.neighbours.REFERENCE` of them are kept, in the model folder too), with
            leave-one-out training scores. The reference is every sequence of the
            training part (a held-out validation part is not in it; ``sample_weight``
            does not apply: a sequence weighted 0 is in it), so a training sequence
            scores 0; under ``max_time`` it is drawn from the sequences scored in the
            budget. In the one-vs-rest benchmark the neighbours
            score is far ahead on single-channel shapes (GunPoint 0.91 against 0.52
            AUROC) and behind on JapaneseVowels (0.80 against 0.98)
            (docs/anomalies.md). Sequence scores only; not with
            ``max_len_policy="window"``.
        unknown: for text input, a character outside the vocabulary learned in `fit`
            raises (``"error"``, default) or becomes ``<unk>`` (``"map"``).
        missing: what a NaN inside a sequence's length is (continuous data): an error
            naming the sequence, step and feature (``"error"``, default), or a missing
            element (``"mask"``): the encoder sees it filled beside a per-feature observed
            indicator, losses, scores and the scaler's statistics skip it, and training
            hides a share of the observed elements (`seqae.tasks.HIDE_OBSERVED`) and
            learns to predict them, so that `impute` fills gaps in. Lengths alone decide
            what is padding. Token and text data refuse ``"mask"`` (docs: gaps).
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
        precision: the arithmetic of training (`seqae.train.TrainConfig`): ``"32"``
            (float32), ``"bf16"`` (bfloat16 autocast), ``"16"`` (float16 autocast with a
            loss scale); ``"auto"`` (default): 32, on GPUs too, where bf16 made every
            measured `fit` slower (`seqae.recipe.precision`; bf16 halves the activations'
            memory). Weights, masked losses and
            the length head stay in float32; `encode`, `score`, `reconstruct` and
            `decode` compute in float32 whatever the setting.
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
        loss_normalize: str = "element",
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
        threshold_rule: str = "quantile",
        anomaly_score: str = "reconstruction",
        unknown: str = "error",
        missing: str = "error",
        batching: str = "auto",
        max_len: int | None = 10_000,
        max_len_policy: str = "refuse",
        device: str = "auto",
        threads: int | str | None = "auto",
        precision: str = "auto",
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
        self.loss_normalize = loss_normalize
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
        self.threshold_rule = threshold_rule
        self.anomaly_score = anomaly_score
        self.unknown = unknown
        self.missing = missing
        self.batching = batching
        self.max_len = max_len
        self.max_len_policy = max_len_policy
        self.device = device
        self.threads = threads
        self.precision = precision
        self.seed = seed
        self.verbose = verbose

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
        sample_weight: Any = None,
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
                (default: 0 for data in memory, 200 for a source).
            sample_weight: one non-negative weight per sequence of ``X`` (data in
                memory), checked before any training (an error names the first sequence
                that is off): each sequence's term in the training loss is multiplied by
                its weight (``loss_normalize``; a sequence cut into windows gives each its
                weight). Only their ratios count; the validation loss is unweighted.

        A fit that raises (Ctrl-C included) leaves the estimator as it was: unfitted, or
        holding its earlier fit whole.
        """
        clock = time.perf_counter()  # max_time bounds the whole call from here
        p = self.get_params()
        validate(p)  # every parameter, before any data are read
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        get_loss(self.loss)
        device = resolve_device(self.device)  # a device this machine lacks: before any work
        if checkpoint_dir is not None and context().main:
            model_dir.check_target(checkpoint_dir)
        progress = Progress(self.verbose, self.max_epochs, self.max_time)
        main = context().main  # (rank 0 alone shows progress)
        source, task = from_input(X, validation, self.normalize, self.unknown,
                                  LengthPolicy(self.max_len, self.max_len_policy), self.missing,
                                  sample_weight, progress.reporter("indexing", main))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            rng = np.random.default_rng(self.seed)
            train_part, val_part = source.split(
                recipe.validation_size(self.validation_fraction, len(source)), rng)
            task.fit(source.data_max, train_part.stats)
            if val_part is not None:
                val_part.check(task)
            max_length = int(source.lengths.max())
            plan = recipe.resolve(p, train_part.lengths, max_length, source.n_features,
                                  task.head(self.copies))
            net = AutoencoderNet(plan.model).to(device)
            fitted = Fitted(net, plan.model, task, max_length, [])
            every = source.checkpoint_every if checkpoint_every is None else checkpoint_every
            plan.train.checkpoint_every = every or 0
            # what reading the data took comes off the training budget, and a share is
            # kept for the pass after training (`seqae.recipe.train_budget`)
            floor = 0.0 if self.max_time is None else self._scoring_floor(fitted, train_part)
            plan.train.max_time = recipe.train_budget(self.max_time,
                                                      time.perf_counter() - clock, floor)
            plan.train.precision, why = recipe.precision(self.precision, device.type)
            if self.precision == "auto":
                plan.reasons["precision"] = why
            fitted.history = self._train(
                fitted, plan.train, train_part.view(task, device, self.loss_normalize),
                None if val_part is None else val_part.view(task, device,
                                                            self.loss_normalize),
                {**source.fingerprint(), **self._settings()}, callbacks, checkpoint_dir, resume,
                progress)
            scored = self._scored(train_part, fitted.history, clock)
        self._after_training(fitted, scored.chunks(),
                             None if self.max_time is None else clock + self.max_time,
                             progress.reporter("scoring", main), len(scored.lengths))
        fitted.n_train = len(train_part.lengths)
        self._commit(fitted)
        return self

    def _scoring_floor(self, fitted: Fitted, part) -> float:
        """Seconds the pass after training takes at least (`seqae.recipe.MIN_SCORED`
        training sequences, or all): scoring a few of them is timed twice, the faster
        kept (the first pays for warming up). The pace is the model's, not its weights',
        so the untrained network tells it; the random generators are left as they
        were."""
        sample = part.sample(int(PROBE * part.lengths.mean()) + 1, 1,
                             np.random.default_rng([self.seed, 31]))
        seqs = next(iter(sample.chunks()))
        seqs = seqs.take(np.arange(min(PROBE, len(seqs))))
        model = self._model(fitted)
        took = []
        with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda"
                                   else []):
            for _ in range(2):
                began = time.perf_counter()
                inference.encode_score(model, seqs, latents=True, scores=True)
                took.append(time.perf_counter() - began)
        fitted.net.train()
        pace = int(seqs.lengths.sum()) / max(min(took), 1e-9)  # valid steps per second
        floor = min(recipe.MIN_SCORED, len(part.lengths)) * float(part.lengths.mean()) / pace
        if self.anomaly_score == "neighbours":  # the leave-one-out distances: n^2 pairs
            n = min(REFERENCE, len(part.lengths))
            floor += n * n * fitted.config.latent_dim * LOO_SECONDS
        return floor

    def _scored(self, part, history: list[dict[str, Any]], clock: float):
        """The training part, or with ``max_time`` a random sample of it when scoring
        all of it would not end within the budget at the pace training kept
        (`seqae.recipe.scored_steps`); the sample is logged, and its size kept in the
        model folder (``scored``)."""
        left = None if self.max_time is None else self.max_time - (time.perf_counter() - clock)
        steps = recipe.scored_steps(int(part.lengths.sum()),
                                    sum(int(r.get("steps", 0)) for r in history),
                                    float(history[-1]["time"]) if history else 0.0, left)
        if steps is None:
            return part
        sample = part.sample(steps, recipe.MIN_SCORED, np.random.default_rng([self.seed, 29]))
        log.info("max_time: the threshold and the length head come from a random sample "
                 "of %d of the %d training sequences", len(sample.lengths), len(part.lengths))
        return sample

    def _settings(self) -> dict[str, Any]:
        """The parameters a resumed fit must share (not how it shows progress or where)."""
        return {k: v for k, v in self.get_params().items()
                if k not in ("verbose", "device", "threads", "anomaly_score")}

    def _train(self, fitted: Fitted, config, train_data, val_data,
               fingerprint: dict[str, Any], callbacks: list[Callback] | None,
               checkpoint_dir: str | Path | None, resume: bool,
               progress: Progress) -> list[dict[str, Any]]:
        """Run `seqae.train.train` with the checkpointer, the model written along the way
        and the progress display (rank 0 alone writes and shows)."""
        ctx = context()
        checkpointer = None
        extra: list[Callback] = []
        if checkpoint_dir is not None:
            from .checkpoint import Checkpointer

            checkpointer = Checkpointer(checkpoint_dir, fingerprint)
            if ctx.main:
                extra.append(model_dir.PartialWriter(fitted, self.get_params(), type(self).__name__,
                                                      Path(checkpoint_dir)))
        if ctx.main:
            extra.append(progress)
        threads = recipe.threads(self.threads, fitted.config, next(fitted.net.parameters())
                                 .device.type)
        with cpu_threads(threads):
            return train(fitted.net, get_loss(self.loss), train_data, config, val_data,
                         [*(callbacks or []), *extra], checkpointer=checkpointer,
                         resume=resume)

    def _after_training(self, fitted: Fitted, chunks, deadline: float | None = None,
                        report: Callable[[int, int], None] | None = None,
                        total: int = 0) -> None:
        """One pass over the training data (or the sample `_scored` drew): every
        training score (the threshold), and the latents of the first
        `LENGTH_HEAD_SAMPLE` sequences with their lengths (the length head: a
        least-squares fit of log length on the latents, exact). With
        ``anomaly_score="neighbours"`` every latent goes to the reference (a uniform
        sample of `seqae.neighbours.REFERENCE` past that), and the training scores are
        the reference's leave-one-out distances. Past the ``deadline``
        (the end of ``max_time``) it stops after the chunk at hand once it holds
        `seqae.recipe.MIN_SCORED` scores: a guard for when scoring ran slower than
        `_scored` reckoned."""
        model = self._model(fitted)
        scores: list[np.ndarray] = []
        latents: list[np.ndarray] = []
        lens: list[np.ndarray] = []
        reservoir = (Reservoir(REFERENCE, np.random.default_rng([self.seed, 37]))
                     if self.anomaly_score == "neighbours" else None)
        for seqs in chunks:
            keep = sum(len(z) for z in latents) < LENGTH_HEAD_SAMPLE
            Z, sc = inference.encode_score(model, seqs, latents=keep or reservoir is not None,
                                           scores=True)
            assert sc is not None
            scores.append(sc)
            if report is not None:
                report(sum(len(s) for s in scores), total)
            if reservoir is not None:
                assert Z is not None
                reservoir.add(Z)
            if Z is not None and keep:
                latents.append(Z)
                lens.append(seqs.lengths)
            if (deadline is not None and time.perf_counter() > deadline
                    and sum(len(s) for s in scores) >= recipe.MIN_SCORED):
                log.info("max_time: the threshold and the length head come from the %d "
                         "training sequences scored within the budget",
                         sum(len(s) for s in scores))
                break
        device = model.device
        fitted.net.length_head.fit_least_squares(
            torch.as_tensor(np.concatenate(latents), device=device),
            torch.as_tensor(np.concatenate(lens), device=device))
        train_scores = np.concatenate(scores)
        if reservoir is not None:
            assert reservoir.rows is not None
            fitted.neighbours = Neighbours(reservoir.rows)
            train_scores = fitted.neighbours.leave_one_out()
        fitted.train_scores = train_scores
        fitted.threshold = _threshold(train_scores, self.threshold_rule, self.contamination)

    def _commit(self, fitted: Fitted) -> None:
        """Every fitted attribute at once."""
        self.module_, self.model_config_, self.task_ = fitted.net, fitted.config, fitted.task
        self.max_length_, self.history_ = fitted.max_length, fitted.history
        assert fitted.train_scores is not None  # (a folder written during fit: empty)
        self.train_scores_: np.ndarray = fitted.train_scores
        self.threshold_ = fitted.threshold
        # anomaly_score="neighbours": the training embeddings that `score` measures
        # distances to (None for the reconstruction score)
        self.neighbours_: Neighbours | None = fitted.neighbours
        # how many training sequences the scores were drawn from (more than the scores
        # when max_time left time to score a sample only)
        self.n_train_sequences_ = (len(fitted.train_scores) if fitted.n_train is None
                                   else fitted.n_train)

    def _fitted(self) -> Fitted:
        self._check_fitted()
        return Fitted(self.module_, self.model_config_, self.task_, self.max_length_,
                      self.history_, self.train_scores_, self.threshold_,
                      self.n_train_sequences_, self.neighbours_)

    def _neighbours(self) -> Neighbours | None:
        """The fitted reference of ``anomaly_score="neighbours"`` (None: the model scores
        by reconstruction); raises when ``anomaly_score`` was changed after the fit (the
        scores and the threshold are the fit's kind)."""
        self._check_fitted()
        found = "neighbours" if self.neighbours_ is not None else "reconstruction"
        if found == "neighbours" and self.max_len_policy == "window":
            raise ValueError("max_len_policy was set to 'window' after a fit with "
                             "anomaly_score='neighbours', whose reference holds whole "
                             "sequences' embeddings: set it back")
        if found != self.anomaly_score and not len(self.train_scores_):
            raise ValueError(_NO_SCORES.replace("training scores", "reference embeddings, "
                                                "training scores"))
        if self.anomaly_score != found:
            raise ValueError(f"anomaly_score is {self.anomaly_score!r} but this model was "
                             f"fitted with {found!r} (its threshold and training scores "
                             "are of that kind): fit again, or set it back")
        return self.neighbours_

    def threshold_for(self, contamination: float) -> float:
        """The score above which a share ``contamination`` of the training data lies."""
        self._check_fitted()
        if not len(self.train_scores_):
            raise ValueError(_NO_SCORES)
        return _quantile(self.train_scores_, contamination)

    def is_anomaly(self, X: Sequences | list, threshold: float | None = None) -> np.ndarray:
        """``(N,)`` bool: score above ``threshold`` (default ``threshold_``)."""
        self._check_fitted()
        if threshold is None and self.threshold_ is None:
            raise ValueError(_NO_SCORES + "; or pass a threshold")
        return self.score(X) > (self.threshold_ if threshold is None else threshold)

    # ------------------------------------------------------------------ fitted state
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted yet: call fit() or load() first"
            )

    def _model(self, fitted: Fitted | None = None) -> inference.Model:
        """The fitted network with its task, inference batch size and CPU threads."""
        f = fitted or self._fitted()
        device = next(f.net.parameters()).device.type
        return inference.Model(f.net, f.task, self.batch_size,
                               recipe.threads(self.threads, f.config, device))

    @property
    def scaler_(self):
        """The fitted `seqae.scaling.Scaler` (None for tokens)."""
        return self.task_.scaler

    @property
    def vocab_(self) -> CharVocab | None:
        """The `seqae.vocab.CharVocab` learned from texts (None otherwise)."""
        return getattr(self, "task_", None) and self.task_.vocab

    @property
    def vocab_size_(self) -> int:
        """Token ids the model knows (0 for continuous data)."""
        return self.task_.vocab_size

    @property
    def n_features_in_(self) -> int:
        """Features per step of the training data (1 for tokens)."""
        return self.task_.n_features

    @property
    def feature_names_in_(self) -> list[str] | None:
        """The training data's feature names, when they had names."""
        return self.task_.feature_names

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

    # ------------------------------------------------------------------ inference
    def _limited(self, X: Any):
        """``X`` as `Sequences` under the length policy (`seqae.lengths.Limited`)."""
        self._check_fitted()
        return LengthPolicy(self.max_len, self.max_len_policy).apply(
            self.task_.sequences(X, self.unknown))

    def encode(self, X: Any) -> np.ndarray:
        """``(N, latent_dim)`` embeddings, in the input's order (a `ParquetSource`'s
        index order; `seqae.stream.write_outputs` streams them to a file instead)."""
        chunks = chunks_of(X)
        if chunks is not None:
            return np.concatenate([self.encode(seqs) for seqs in chunks])
        lim = self._limited(X)
        Z = inference.encode_score(self._model(), lim.seqs, latents=True)[0]
        assert Z is not None
        return Z if lim.owner is None else lim.merge(Z).astype(np.float32)

    transform = encode

    def fit_transform(self, X: Sequences | list, y: Any = None, **fit_params) -> np.ndarray:
        return self.fit(X, **fit_params).encode(X)

    @overload
    def score(self, X: Any, per_step: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def score(self, X: Any, per_step: Literal[True]) -> Sequences: ...

    def score(self, X: Any, per_step: bool = False) -> np.ndarray | Sequences:
        """Anomaly scores, higher = more anomalous.

        Continuous data: mean squared error of `reconstruct` over each sequence's valid
        steps and features (with ``missing="mask"``, over its observed elements only),
        in the input's units (when the scaler standardises each sequence, in each
        sequence's standardised units: see `seqae.scaling.Scaler.score_scale`). Tokens:
        mean cross-entropy per valid token (and the EOS). A model fitted with
        ``anomaly_score="neighbours"``: the distance of each sequence's embedding to the
        nearest training embedding (`seqae.neighbours`), sequences only.

        Args:
            X: the sequences (or a `seqae.stream.ParquetSource`, without ``per_step``).
            per_step: False (default): one score per sequence, ``(N,)`` float64. True:
                each step's error, as ragged `Sequences` of one feature (``"score"``,
                float32) at the input's lengths: the mean squared error over the step's
                observed features (NaN at a step whose every feature is missing, and
                after ``max_len`` under ``max_len_policy="truncate"``), or its token's
                cross-entropy. A sequence's score is the mean of its steps'
                errors weighted by their observed features.
        """
        reference = self._neighbours()
        if reference is not None:
            if per_step:
                raise ValueError("this model scores whole sequences by their embeddings' "
                                 "distance to the training ones (anomaly_score="
                                 "'neighbours'): there are no per-step scores; fit with "
                                 "anomaly_score='reconstruction' for them")
            return reference.distances(self.encode(X))
        chunks = chunks_of(X)
        if chunks is not None:
            if per_step:
                raise ValueError("per_step scores are for data in memory; for a "
                                 "ParquetSource score each window's sequences")
            return np.concatenate([self.score(seqs) for seqs in chunks])
        lim = self._limited(X)
        if per_step:
            steps = inference.step_scores(self._model(), lim.seqs)
            if lim.owner is None and len(lim.seqs.values) != len(lim.original.values):
                steps = _beyond_truncation(steps, lim.seqs.lengths, lim.original)
            into = lim.original
            return Sequences(steps, into.offsets.copy(), ids=into.ids,
                             feature_names=["score"], missing="mask")
        scores = inference.encode_score(self._model(), lim.seqs, scores=True)[1]
        assert scores is not None
        return lim.merge(scores)

    def reconstruct(self, X: Sequences | list) -> Sequences | list[str]:
        """Reconstructions at each input's own length, in the input's units (free-running
        for an autoregressive decoder). Texts in, texts out."""
        lim = self._limited(X)
        rec = lim.stitch(inference.reconstruct(self._model(), lim.seqs))
        return self.task_.to_user(rec, X)

    def impute(self, X: Any) -> Sequences:
        """``X`` with each missing element (NaN) replaced by the model's value, in the
        input's units; every observed element is returned as it is, bit for bit (as the
        float32 `Sequences` holds it), and the lengths, ids and feature names (in the
        model's order) are kept. The model's value is the linear interpolation between
        the feature's observed neighbours plus a correction that a per-step head on the
        encoder's outputs predicts (it sees the observed elements of every feature
        around the gap and where the gaps are), trained on observed elements hidden in
        training (`seqae.nn.ModelConfig.imputer`). Models saved before seqae had that
        head impute with their reconstruction.

        Needs a model fitted with ``missing="mask"`` (trained to predict hidden
        elements); with ``max_len_policy="truncate"`` every sequence must fit in
        ``max_len`` ("window" imputes long sequences window by window).

        Example:
            >>> import numpy as np, seqae
            >>> rng = np.random.default_rng(0)
            >>> seqs = [rng.normal(size=(n, 2)) for n in (6, 9, 7)]
            >>> seqs[1][3, 0] = np.nan
            >>> ae = seqae.SequenceAutoencoder(hidden_size=8, max_epochs=2, missing="mask",
            ...                                verbose=0).fit(seqs)
            >>> bool(np.isnan(ae.impute(seqs).values).any())
            False
        """
        self._check_fitted()
        if self.missing != "mask":
            raise ValueError("impute needs a model fitted with missing='mask' (this one "
                             "refuses missing values: missing='error')")
        lim = self._limited(X)
        if lim.seqs.n_steps != lim.original.n_steps:
            raise ValueError("impute fills every step: with max_len_policy='truncate' a "
                             f"sequence is longer than max_len={self.max_len}; use "
                             "max_len_policy='window' or raise max_len")
        rec = lim.stitch(inference.impute(self._model(), lim.seqs))
        seqs = lim.original
        filled = rec.values
        if lim.owner is not None:  # pieces: the interpolation across the cuts, not to them
            scaler = self.task_.scaler  # the input value a scaled 0 stands for: the fill
            assert scaler is not None  # missing="mask": continuous data
            filled = (filled + interpolate_gaps(seqs, scaler.stats(seqs)[0])
                      - interpolate_gaps(lim.seqs, scaler.stats(lim.seqs)[0]))
        values = np.where(np.isnan(seqs.values), filled, seqs.values).astype(np.float32)
        return Sequences(values, seqs.offsets.copy(), ids=seqs.ids,
                         feature_names=seqs.feature_names)

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
        return inference.decode(self._model(), Z, lengths, max_length or 2 * self.max_length_,
                                self.feature_names_in_)

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
        last, so a directory is complete once it holds a config naming its weights
        (`seqae.model_dir`).
        """
        self._neighbours()  # the parameter and the fitted scores agree
        return model_dir.write(path, self._fitted(), self.get_params(), type(self).__name__)

    def export(self, path: str | Path, part: str = "encoder",
               format: str | None = None) -> Path:
        """Write one part of the fitted model as a graph a service runs without seqae.

        Inputs are a padded batch and its lengths (int64), batch size and time length
        both dynamic; the scaler is folded in (inputs and outputs in the data's units);
        token and text models take and give token ids. Everything a client needs (the
        vocabulary, the threshold, the input and output names, shapes and types) is
        written beside the file as ``path.json``, and into the file (the ONNX metadata
        key ``seqae``; the TorchScript extra file ``settings.json``). The graph is checked
        against the model before anything is written (`seqae.export`).

        Args:
            path: the file to write (``.onnx``, or ``.pt`` for TorchScript).
            part: ``"encoder"`` (default): ``(x, lengths) -> z`` as `encode`;
                ``"decoder"``: ``(z, lengths) -> y`` as `decode` at given lengths;
                ``"scorer"``: ``(x, lengths) -> scores`` as `score`.
            format: ``"onnx"`` (needs the ``onnx`` package: ``pip install
                'seqae[export]'``) or ``"torchscript"`` (`torch.jit.load` reads it);
                None (default): from the suffix, else ONNX.

        Returns:
            ``path``.

        Raises:
            seqae.errors.ExportError: a bad part or format, a file seqae did not write
                at ``path`` (never overwritten), or a part this model cannot export (the
                free-running autoregressive decoder); nothing is written then.

        Example:
            >>> import numpy as np, seqae
            >>> seqs = seqae.Sequences.from_list([np.ones((n, 2)) * n for n in (3, 5, 4)])
            >>> ae = seqae.SequenceAutoencoder(latent_dim=2, hidden_size=4, max_epochs=1,
            ...                                verbose=0).fit(seqs)
            >>> ae.export("encoder.pt").name  # doctest: +SKIP
            'encoder.pt'
        """
        from .export import export_model

        return export_model(self._fitted(), path, part, format, self.get_params())

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> SequenceAutoencoder:
        """Load a model written by `save`. Never unpickles anything."""
        params, fitted = model_dir.read(path, cls.__name__, device)
        est = cls(**{**params, "device": device})
        est._commit(fitted)
        return est


_NO_SCORES = ("this model was written during fit (checkpoint_dir), before its training "
              "scores and threshold: load the folder once the fit has ended")


def _beyond_truncation(steps: np.ndarray, kept: np.ndarray, original: Sequences) -> np.ndarray:
    """Per-step scores of truncated sequences (``kept`` steps each) at the ``original``
    lengths: NaN at the steps ``max_len_policy="truncate"`` left unscored."""
    out = np.full(len(original.values), np.nan, dtype=steps.dtype)
    rows = original.step_index
    position = np.arange(len(rows)) - original.offsets[rows]  # of each step in its sequence
    out[position < kept[rows]] = steps
    return out


def _threshold(scores: np.ndarray, rule: str, contamination: float) -> float:
    """The anomaly threshold of the training ``scores`` under ``rule`` (see
    `SequenceAutoencoder`'s ``threshold_rule``)."""
    if rule == "mad":
        median = float(np.median(scores))
        spread = np.abs(scores - median)
        sigma = 1.4826 * float(np.median(spread))
        if sigma == 0.0:  # over half the scores tie: the mean absolute deviation instead
            sigma = 1.2533 * float(spread.mean())  # (also a std for normal data)
        return median + MAD_K * sigma
    return _quantile(scores, contamination)


def _quantile(scores: np.ndarray, contamination: float) -> float:
    """The score above which a share ``contamination`` of ``scores`` lies."""
    if not 0.0 <= contamination < 1.0:
        raise ValueError(f"contamination must be in [0, 1), got {contamination}")
    return float(np.quantile(scores, 1.0 - contamination))
