"""Keras 3 front end: the seeds' models, with padding handled right, as Keras layers.

An optional extra (``pip install seqae[keras]``) that works on any Keras 3 backend; the
core never imports it. Everything here follows Keras' own mask protocol: a layer that
produces a mask attaches it to its output, the next layer receives it as ``mask=``, and
the losses below read it from the prediction.

- `RepeatToLength`: ``RepeatToLength()([latent, reference])`` repeats ``latent (B, D)``
  along the time axis of ``reference (B, T, ...)`` (T may differ per batch) and carries
  the reference's mask, so each sequence is decoded at its own length (seed 000,
  option 1, without a fixed ``timesteps``).
- `CropToMask`: zeros the outputs at masked steps, from the mask itself (not by testing
  values for zero, so real zeros in the data keep their gradient: seed 000, option 3,
  done right), and keeps the mask.
- Masked losses for ``compile``: `masked_mse`, `masked_mae`,
  `masked_categorical_crossentropy`, `masked_sparse_categorical_crossentropy`, averaged
  over the valid steps only. Call one with ``pad_class=`` (or ``pad_value=``) to build
  the mask from the targets instead (seed 003).
- `BucketedSequence`: a ``keras.utils.PyDataset`` of length-sorted batches padded per
  batch (seed 002's alternative to padding everything to one length).
- `sequence_autoencoder`: ``(autoencoder, encoder, decoder)`` built from these pieces,
  for continuous features or token ids; the decoder decodes at any length.

Example (``KERAS_BACKEND=torch``):
    >>> import numpy as np, seqae.keras as sk
    >>> ae, enc, dec = sk.sequence_autoencoder(n_features=2, latent_dim=4, units=8)
    >>> x = np.zeros((2, 5, 2), "float32"); x[:, :3] = 1.0   # lengths 3 and 3
    >>> ae.compile(optimizer="adam", loss=sk.masked_mse)
    >>> out = dec.predict([enc.predict(x, verbose=0), np.array([2, 7])], verbose=0)
    >>> out.shape, float(np.abs(out[0, 2:]).sum())
    ((2, 7, 2), 0.0)
"""

from __future__ import annotations

from typing import Any

try:
    import keras
    from keras import layers, ops
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "seqae.keras needs Keras 3: pip install 'seqae[keras]' (and pick a backend, e.g. "
        f"KERAS_BACKEND=torch): {e}"
    ) from None

import numpy as np

__all__ = [
    "RepeatToLength",
    "CropToMask",
    "LengthsToReference",
    "MaskedLoss",
    "masked_mse",
    "masked_mae",
    "masked_categorical_crossentropy",
    "masked_sparse_categorical_crossentropy",
    "BucketedSequence",
    "sequence_autoencoder",
]


def _get_mask(x):
    """The Keras mask attached to ``x`` (None when there is none)."""
    return getattr(x, "_keras_mask", None)


# ------------------------------------------------------------------------------ layers
@keras.saving.register_keras_serializable(package="seqae")
class RepeatToLength(layers.Layer):
    """``[latent (B, D), reference (B, T, ...)] -> (B, T, D)``, with the reference's mask.

    ``reference`` may be features ``(B, T, F)`` or token ids ``(B, T)``; its time axis
    may be None and change from batch to batch. The output carries ``reference``'s mask,
    so a decoder RNN after it skips each sequence's padding and the loss ignores it.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        latent, reference = inputs
        time = ops.shape(reference)[1]
        return ops.repeat(ops.expand_dims(latent, 1), time, axis=1)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return mask[1]

    def compute_output_shape(self, input_shape):
        latent, reference = input_shape
        return (latent[0], reference[1], latent[-1])


@keras.saving.register_keras_serializable(package="seqae")
class CropToMask(layers.Layer):
    """Outputs set to exactly 0 at masked steps, decided by the mask alone.

    Called on one tensor it uses that tensor's mask; called on ``[x, reference]`` it uses
    the reference's mask (seed 000's ``cropOutputs([decoded, inputs])``). A real 0 in
    the data is never mistaken for padding, and masked steps get no gradient. The mask
    stays on the output for the loss.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _mask(self, inputs, mask):
        if isinstance(inputs, (list, tuple)):
            return None if mask is None else mask[1]
        return mask

    def call(self, inputs, mask=None):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        m = self._mask(inputs, mask)
        if m is None:
            return x
        m = ops.cast(m, "bool")
        while len(m.shape) < len(x.shape):
            m = ops.expand_dims(m, -1)
        return ops.where(m, x, ops.zeros_like(x))

    def compute_mask(self, inputs, mask=None):
        return self._mask(inputs, mask)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="seqae")
class LengthsToReference(layers.Layer):
    """``lengths (B,)`` -> ``(B, max(lengths), 1)``: 1.0 for the first ``lengths[b]``
    steps of row b, 0.0 after. Followed by ``Masking(0.0)``, it is the reference
    `RepeatToLength` needs to decode a latent at lengths of your choice."""

    def call(self, lengths):
        lengths = ops.reshape(ops.cast(lengths, "int32"), (-1,))
        valid = ops.arange(ops.max(lengths))[None, :] < lengths[:, None]  # (B, T)
        return ops.expand_dims(ops.cast(valid, self.compute_dtype), -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 1)


# ------------------------------------------------------------------------------ losses
_KINDS = ("mse", "mae", "categorical_crossentropy", "sparse_categorical_crossentropy")


@keras.saving.register_keras_serializable(package="seqae")
class MaskedLoss(keras.losses.Loss):
    """A loss averaged over the valid steps only (sum of the per-step losses at valid
    steps / number of valid steps, weighted by ``sample_weight`` when given).

    The valid steps are the mask Keras attached to the prediction, and (when given) the
    steps whose target is not padding: ``pad_class`` (a class id: one-hot targets whose
    argmax is it, or sparse targets equal to it) or ``pad_value`` (every feature of the
    target step equal to it, Keras' ``Masking`` rule). With neither, every step counts.
    A batch with no valid step gives 0.

    Calling an instance with only keyword arguments returns a new, configured loss:
    ``masked_categorical_crossentropy(pad_class=2)``.
    """

    def __init__(self, kind: str = "mse", pad_class: int | None = None,
                 pad_value: float | None = None, from_logits: bool = False,
                 name: str | None = None, **kwargs):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if pad_class is not None and pad_value is not None:
            raise ValueError("give pad_class or pad_value, not both")
        super().__init__(name=name or f"masked_{kind}", **kwargs)
        self.kind = kind
        self.pad_class = pad_class
        self.pad_value = pad_value
        self.from_logits = from_logits

    def __call__(self, y_true=None, y_pred=None, sample_weight=None, **config):
        if y_true is None and y_pred is None:  # configure: masked_mse(pad_value=0.0)
            return type(self)(**{**self.get_config(), "name": None, **config})
        if config:
            raise TypeError(f"unexpected arguments {sorted(config)}")
        mask = _get_mask(y_pred)
        per_step = self.call(y_true, y_pred)  # (B, T)
        valid = ops.ones_like(per_step, dtype="bool") if mask is None else ops.cast(mask, "bool")
        from_targets = self._target_mask(y_true)
        if from_targets is not None:
            valid = ops.logical_and(valid, from_targets)
        weight = ops.cast(valid, per_step.dtype)
        if sample_weight is not None:
            sw = ops.cast(ops.convert_to_tensor(sample_weight), per_step.dtype)
            while len(sw.shape) < len(weight.shape):
                sw = ops.expand_dims(sw, -1)
            weight = weight * sw
        total = ops.sum(ops.where(valid, per_step * weight, ops.zeros_like(per_step)))
        return ops.divide_no_nan(total, ops.sum(weight))

    def _target_mask(self, y_true):
        if self.pad_class is not None:
            if self.kind == "sparse_categorical_crossentropy":
                labels = y_true if len(y_true.shape) == 2 else y_true[..., 0]
                return ops.not_equal(ops.cast(labels, "int32"), self.pad_class)
            return ops.not_equal(ops.argmax(y_true, axis=-1), self.pad_class)
        if self.pad_value is not None:
            y = y_true if len(y_true.shape) == 3 else ops.expand_dims(y_true, -1)
            return ops.any(ops.not_equal(y, ops.cast(self.pad_value, y.dtype)), axis=-1)
        return None

    def call(self, y_true, y_pred):
        """Per-step losses ``(B, T)`` (no masking, no reduction)."""
        if self.kind == "mse":
            return ops.mean(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)
        if self.kind == "mae":
            return ops.mean(ops.abs(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)
        if self.kind == "categorical_crossentropy":
            return keras.losses.categorical_crossentropy(
                ops.cast(y_true, y_pred.dtype), y_pred, from_logits=self.from_logits)
        labels = y_true if len(y_true.shape) == len(y_pred.shape) - 1 else y_true[..., 0]
        labels = ops.cast(labels, "int32")
        if self.pad_class is not None:  # a padding label may be outside the classes
            labels = ops.where(ops.equal(labels, self.pad_class), 0, labels)
        return keras.losses.sparse_categorical_crossentropy(labels, y_pred,
                                                            from_logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "pad_class": self.pad_class, "pad_value": self.pad_value,
                "from_logits": self.from_logits, "name": self.name}


masked_mse = MaskedLoss("mse")
masked_mae = MaskedLoss("mae")
masked_categorical_crossentropy = MaskedLoss("categorical_crossentropy")
masked_sparse_categorical_crossentropy = MaskedLoss("sparse_categorical_crossentropy")


# ------------------------------------------------------------------------------ data
class BucketedSequence(keras.utils.PyDataset):
    """Length-sorted batches of `seqae.Sequences`, each padded to its own longest
    sequence, for ``model.fit``.

    Every sequence appears once per epoch; the batches (sequences of similar length,
    cut from the length order) are fixed, their order is reshuffled every epoch from
    ``seed``. Each item is ``(x, x)`` (autoencoder targets), ``x`` padded with
    ``pad_value`` (continuous, ``(B, T, F)`` float32; use ``Masking(pad_value)``) or 0
    (token ids, ``(B, T)`` int32; use ``Embedding(mask_zero=True)``).

    Args:
        seqs: a `seqae.Sequences` (or anything `seqae.Sequences.from_list` takes).
        batch_size: sequences per batch (default 32).
        shuffle: reshuffle the batch order every epoch (default True).
        seed: seed of the shuffles (default 0).
        pad_value: padding of continuous data (default 0.0).
        targets: ``"input"`` (default): ``(x, x)``; ``None``: ``x`` alone.
        **kwargs: ``keras.utils.PyDataset`` options (``workers``...).
    """

    def __init__(self, seqs, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                 pad_value: float = 0.0, targets: str | None = "input", **kwargs):
        super().__init__(**kwargs)
        from .data import Sequences

        if not isinstance(seqs, Sequences):
            seqs = Sequences.from_list(seqs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if targets not in ("input", None):
            raise ValueError(f"targets must be 'input' or None, got {targets!r}")
        self.seqs = seqs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pad_value = pad_value
        self.targets = targets
        order = np.argsort(seqs.lengths, kind="stable")
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        self.epoch = 0
        self.order = self._order(0)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.batches))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self.batches):
            raise IndexError(f"batch {index} of {len(self.batches)}")
        idx = self.batches[self.order[index]]
        part = self.seqs.take(idx)
        if part.is_tokens:
            x, _ = part.pad(value=0)
            x = x.astype(np.int32)
        else:
            x, _ = part.pad(value=self.pad_value)
            x = x.astype(np.float32)
        return (x, x) if self.targets == "input" else x

    def indices(self, index: int) -> np.ndarray:
        """Positions in ``seqs`` of the sequences in batch ``index`` (this epoch)."""
        return self.batches[self.order[index]]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order(self.epoch)


# ------------------------------------------------------------------------------ models
def _rnn(cell: str, units: int, **kwargs):
    if cell == "lstm":
        return layers.LSTM(units, **kwargs)
    if cell == "gru":
        return layers.GRU(units, **kwargs)
    raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")


def sequence_autoencoder(n_features: int | None = None, vocab_size: int | None = None,
                         latent_dim: int = 32, units: int = 64, cell: str = "lstm",
                         mask_value: float = 0.0):
    """The seeds' autoencoder, built right: ``(autoencoder, encoder, decoder)``.

    Continuous data (``n_features``): ``Masking(mask_value)``, an RNN encoder whose final
    state (at each sequence's last valid step) is mapped to the latent, `RepeatToLength`
    to the input's own length, an RNN decoder and a linear head, `CropToMask`. Tokens
    (``vocab_size``; id 0 is padding): ``Embedding(mask_zero=True)`` in and a softmax
    over the vocabulary out. Compile the autoencoder with `masked_mse` or
    `masked_sparse_categorical_crossentropy`.

    Args:
        n_features: features per step (continuous data), or
        vocab_size: number of token ids, 0 = padding (token data). One of the two.
        latent_dim: size of the embedding (default 32).
        units: RNN units (default 64).
        cell: ``"lstm"`` (default) or ``"gru"``.
        mask_value: padding value of continuous data (default 0.0).

    Returns:
        ``autoencoder`` (padded sequences -> reconstructions, zeros at padding),
        ``encoder`` (padded sequences -> ``(B, latent_dim)``) and ``decoder``, which
        takes ``[latent (B, latent_dim), lengths (B,)]`` and decodes each latent at its
        own length, any length (it shares the autoencoder's weights).
    """
    if (n_features is None) == (vocab_size is None):
        raise ValueError("give n_features (continuous data) or vocab_size (tokens)")
    tokens = vocab_size is not None
    if tokens:
        inputs = keras.Input((None,), dtype="int32", name="tokens")
        seen = layers.Embedding(vocab_size, units, mask_zero=True, name="embedding")(inputs)
        out_size = vocab_size
    else:
        inputs = keras.Input((None, n_features), name="sequences")
        seen = layers.Masking(mask_value, name="masking")(inputs)
        out_size = n_features
    encoder_rnn = _rnn(cell, units, name="encoder_rnn")
    to_latent = layers.Dense(latent_dim, name="to_latent")
    latent = to_latent(encoder_rnn(seen))
    repeat = RepeatToLength(name="repeat_to_length")
    decoder_rnn = _rnn(cell, units, return_sequences=True, name="decoder_rnn")
    head = layers.Dense(out_size, activation="softmax" if tokens else None, name="head")
    crop = CropToMask(name="crop_to_mask")

    def decode(z, reference):
        return crop(head(decoder_rnn(repeat([z, reference]))))

    autoencoder = keras.Model(inputs, decode(latent, seen), name="sequence_autoencoder")
    encoder = keras.Model(inputs, latent, name="encoder")
    z_in = keras.Input((latent_dim,), name="latent")
    lengths = keras.Input((), dtype="int32", name="lengths")
    reference = layers.Masking(0.0, name="reference_mask")(
        LengthsToReference(name="reference")(lengths))
    decoder = keras.Model([z_in, lengths], decode(z_in, reference), name="decoder")
    return autoencoder, encoder, decoder
