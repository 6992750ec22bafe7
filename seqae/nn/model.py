"""The encoder-decoder module and its configuration (no training code here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import hierarchical_contrastive, info_nce, masked_cross_entropy
from ..masking import host_max, lengths_to_mask
from .decoders import AutoregressiveDecoder, LengthHead, RepeatDecoder
from .encoders import ConvEncoder, RNNEncoder, SequenceEncoder, patchify, reverse_within_length

__all__ = ["ModelConfig", "AutoencoderNet", "current_names", "DECODERS", "ENCODERS",
           "CONTRASTS", "observed", "with_indicator", "interpolate", "IMPUTE_WEIGHT",
           "random_crops", "overlapping_crops"]

DECODERS = ("repeat", "autoregressive")
ENCODERS = ("rnn", "conv")
CONTRASTS = ("instance", "hierarchical")
# the crop-agreement term's shortest crop, as a share of the sequence's length
CROP_MIN = 0.5
# ModelConfig.imputer: weight of a hidden element's imputation error against an
# observed element's reconstruction error in the training loss
IMPUTE_WEIGHT = 1.0
# weights saved under older names: the encoder's body was `encoder.rnn` (it also held the
# convolutional encoder) before model folder format 2
_RENAMED = {"encoder.rnn.": "encoder.body."}


def current_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An `AutoencoderNet` state dict saved by an older seqae, under today's names."""
    out = {}
    for key, value in state.items():
        for old, new in _RENAMED.items():
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    return out
BOS, EOS = 1, 2  # reserved token ids (see seqae.vocab)


@dataclass
class ModelConfig:
    """Architecture of an `AutoencoderNet`.

    Args:
        n_features: features per step of continuous data (1 for tokens).
        latent_dim: size of the embedding (default 32).
        hidden_size: RNN units per direction (default 64).
        num_layers: stacked RNN layers in encoder and decoder (default 1).
        cell: ``"gru"`` or ``"lstm"`` (default ``"gru"``).
        bidirectional: bidirectional encoder (default True).
        pooling: encoder summary, see `RNNEncoder` (default ``"last"``).
        dropout: between stacked layers (default 0).
        decoder: ``"repeat"`` (default) or ``"autoregressive"``.
        position: position channels of the repeat decoder: ``"fourier"`` (default),
            ``"relative"`` or ``"none"``.
        reverse_target: decode the sequence back to front (default False).
        longest_predicted: longest length the length head may predict (default 10,000;
            the estimator sets 4 x the longest training sequence).
        vocab_size: 0 for continuous data; the number of token ids for tokens (ids 0-3
            are PAD, BOS, EOS, UNK).
        embedding_dim: token embedding size (default 32).
        token_dropout: autoregressive token decoder: share of previous tokens hidden as
            <unk> in training (default 0).
        encoder: ``"rnn"`` (default) or ``"conv"`` (`ConvEncoder`: dilated convolutions).
        depth: `ConvEncoder` blocks (default 6).
        kernel_size: `ConvEncoder` convolution width (default 3).
        contrastive: weight of the crop-agreement term added to the training loss (see
            ``contrast``; default 0 = plain reconstruction).
        contrast: ``"instance"`` (default): the pooled latents of a sequence and of a
            crop of it must match (`seqae.losses.info_nce`); ``"hierarchical"`` (conv
            encoder only): the per-step outputs of two overlapping crops, with half of
            each crop's steps hidden at random, must match step by step against the
            other sequences and the other steps, at every time scale
            (`seqae.losses.hierarchical_contrastive`).
        hide: share of each crop's steps hidden in ``"hierarchical"`` (default 0.5).
        pooled_latent: the latent is the conv encoder's pooled per-step outputs
            themselves (``latent_dim`` channels, max-pooled over the valid steps), not a
            linear map of them; the crop term then trains the embedding directly
            (default False).
        bottleneck: width of a linear map between the latent and the decoder (default
            0: none, the decoder reads the latent itself).
        patch: the conv encoder reads patches of this many steps (`seqae.nn.patchify`;
            default 1); the decoder still produces every step.
        copies: tokens only: weight of an extra reconstruction term on copies of the
            batch that are not words of the data: random strings of the rows' lengths
            (``copies_kind="random"``) or random crops of each row (``"crops"``), so
            that the model learns to spell rather than to recall
            (default 0: none).
        copies_kind: ``"random"`` (default) or ``"crops"``.
        missing: continuous data with missing values: NaN inside a sequence's length is
            an element that was not observed. The encoder reads each value filled with 0
            beside a per-feature observed indicator (``2 x n_features`` inputs, so a
            real 0 and a filled one differ), and the loss counts observed elements only
            (`observed`; default False).
        hide_observed: with ``missing``: the share of observed elements hidden from the
            encoder (flagged as missing) in training, which the loss asks the model to
            predict: masked imputation, as SAITS trains (default 0). Uses torch's global
            generator.
        imputer: with ``missing``: each missing element is read filled by linear
            interpolation between its feature's observed neighbours (not 0), and a
            per-step linear head on the encoder's outputs predicts its correction to
            that interpolation (`AutoencoderNet.impute`); trained on the hidden elements
            (weight `IMPUTE_WEIGHT`). Starts at the interpolation itself: the head's
            weights start at 0 (default False: missing values are filled with 0 and
            imputed by the reconstruction, as models saved before it).
    """

    n_features: int
    latent_dim: int = 32
    hidden_size: int = 64
    num_layers: int = 1
    cell: str = "gru"
    bidirectional: bool = True
    pooling: str = "last"
    dropout: float = 0.0
    decoder: str = "repeat"
    position: str = "fourier"
    reverse_target: bool = False
    longest_predicted: int = 10_000
    vocab_size: int = 0
    embedding_dim: int = 32
    token_dropout: float = 0.0
    encoder: str = "rnn"
    depth: int = 6
    kernel_size: int = 3
    contrastive: float = 0.0
    contrast: str = "instance"
    hide: float = 0.5
    pooled_latent: bool = False
    bottleneck: int = 0
    patch: int = 1
    copies: float = 0.0
    copies_kind: str = "random"
    missing: bool = False
    hide_observed: float = 0.0
    imputer: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def observed(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T, F)`` bool: True at each observed element of right-padded ``x`` ``(B, T,
    F)``: inside its row's length and not NaN (padding is never observed, whatever it
    holds)."""
    valid = lengths_to_mask(lengths.to(x.device), x.shape[1])  # (B, T)
    return valid[..., None] & ~torch.isnan(x)


def interpolate(x: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """``(B, T, F)``: ``x`` with each element where ``seen`` is False replaced by the
    linear interpolation, in time, between its feature's nearest observed elements before
    and after it; the nearest one where there is only one side, 0 where the feature has
    no observed element in the row. Observed elements are kept as they are.

    Example:
        >>> x = torch.tensor([[[float("nan")], [1.0], [float("nan")], [4.0], [0.0]]])
        >>> seen = ~torch.isnan(x)
        >>> seen[0, 4] = False  # padding, say
        >>> interpolate(x, seen)[0, :, 0].tolist()
        [1.0, 1.0, 2.5, 4.0, 4.0]
    """
    t = x.shape[1]
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    x = torch.where(seen, x, zero)
    steps = torch.arange(t, device=x.device).view(1, t, 1).expand_as(x)
    before = torch.where(seen, steps, -1).cummax(1).values  # (B, T, F): -1 = none
    after = torch.where(seen, steps, t).flip(1).cummin(1).values.flip(1)  # t = none
    has_before, has_after = before >= 0, after < t
    v0 = x.gather(1, before.clamp(min=0))
    v1 = x.gather(1, after.clamp(max=t - 1))
    span = (after - before).clamp(min=1).to(x.dtype)
    w = (steps - before).to(x.dtype) / span
    between = v0 + w * (v1 - v0)
    one_side = torch.where(has_before, v0, torch.where(has_after, v1, zero))
    return torch.where(seen, x, torch.where(has_before & has_after, between, one_side))


def with_indicator(x: torch.Tensor, lengths: torch.Tensor,
                   fill: str = "zero") -> torch.Tensor:
    """``(B, T, 2F)``: ``x`` with each unobserved element (missing or padding) filled,
    then the observed indicator (1.0 observed, 0.0 not) of each feature. ``fill``:
    ``"zero"`` (0), or ``"linear"`` (`interpolate` between the feature's observed
    neighbours within the row's length; padding is 0)."""
    seen = observed(x, lengths)  # (B, T, F)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    if fill == "linear":
        valid = lengths_to_mask(lengths.to(x.device), x.shape[1])[..., None]  # (B, T, 1)
        filled = torch.where(valid, interpolate(x, seen), zero)
    else:
        filled = torch.where(seen, x, zero)
    return torch.cat([filled, seen.to(x.dtype)], dim=-1)  # (B, T, 2F)


def _append_eos(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T + 1)`` targets: each row's tokens, then EOS at its length, then PAD."""
    mask = lengths_to_mask(lengths, x.shape[1])
    y = F.pad(torch.where(mask, x, torch.zeros_like(x)), (0, 1))  # (B, T + 1)
    return y.scatter(1, lengths[:, None], EOS)


def random_crops(
    x: torch.Tensor, lengths: torch.Tensor, min_share: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random contiguous crop of each right-padded row, right-padded again.

    Row b keeps ``c_b = ceil(u L_b)`` steps, ``u ~ U(min_share, 1)``, from a uniform start
    within its own length (padding is never read as data). Uses torch's global generator.

    Args:
        x: ``(B, T, ...)``.
        lengths: ``(B,)`` valid lengths (>= 1).
        min_share: shortest crop as a share of each row's length.

    Returns:
        ``(crops (B, T', ...), crop lengths (B,))``, ``T' = max c_b``; padding is zero.
    """
    lens = lengths.to(x.device)
    u = torch.empty(lens.shape, device=x.device).uniform_(min_share, 1.0)  # (B,)
    c = torch.ceil(u * lens).long().clamp(min=1).minimum(lens.clamp(min=1))  # (B,)
    start = (torch.rand(lens.shape, device=x.device) * (lens - c + 1)).long()  # (B,)
    return _take(x, start, c)


def overlapping_crops(x: torch.Tensor, lengths: torch.Tensor):
    """Two random crops of each right-padded row that share a random stretch of it.

    Row b of length L gets an overlap of ``c`` steps (uniform in ``min(2, L)..L``) starting
    at ``s``; the first crop runs from a uniform start in ``0..s`` to ``s + c``, the second
    from ``s`` to a uniform end in ``s + c..L``, so each sees the overlap in a different
    context. Uses torch's global generator.

    Args:
        x: ``(B, T, ...)``.
        lengths: ``(B,)`` valid lengths (>= 1).

    Returns:
        ``((crop1, lengths1, offset1), (crop2, lengths2, offset2), c)``: each crop
        right-padded with zeros, and where the overlap starts in it; ``c`` ``(B,)``.
    """
    lens = lengths.to(x.device).clamp(min=1)
    low = lens.clamp(max=2)

    def uniform(lo, hi):  # integers uniform in lo..hi, elementwise
        return lo + (torch.rand(lo.shape, device=x.device) * (hi - lo + 1)).long()

    c = uniform(low, lens)
    s = uniform(torch.zeros_like(c), lens - c)
    a = uniform(torch.zeros_like(s), s)
    e = uniform(s + c, lens)
    return (*_take(x, a, s + c - a), s - a), (*_take(x, s, e - s), torch.zeros_like(s)), c


def _take(x: torch.Tensor, start: torch.Tensor, n: torch.Tensor):
    """``(rows of x from start, n steps each, right-padded with zeros, n)``."""
    t = host_max(n, x.shape[1])  # n <= T: on a GPU the crops are T wide (no read-back)
    steps = torch.arange(t, device=x.device)[None, :]  # (1, T')
    keep = steps < n[:, None]  # (B, T')
    idx = torch.where(keep, start[:, None] + steps, 0)
    idx = idx.reshape(idx.shape + (1,) * (x.dim() - 2)).expand((-1, -1) + x.shape[2:])
    keep = keep.reshape(keep.shape + (1,) * (x.dim() - 2))
    return torch.where(keep, x.gather(1, idx), torch.zeros((), dtype=x.dtype,
                                                          device=x.device)), n


def _check(config: ModelConfig) -> None:
    """Refuse settings that do not go together, before any weight is made."""
    for name, allowed in (("decoder", DECODERS), ("encoder", ENCODERS),
                          ("contrast", CONTRASTS)):
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {getattr(config, name)!r}")
    conv = config.encoder == "conv"
    if config.contrast == "hierarchical" and not conv:
        raise ValueError("contrast='hierarchical' needs encoder='conv'")
    if config.pooled_latent and (not conv or "+" in config.pooling):
        raise ValueError("pooled_latent needs encoder='conv' and a single pooling")
    blocks = config.hidden_size * config.depth
    if conv and config.pooling == "blocks" and config.pooled_latent and (
            config.latent_dim != blocks):
        raise ValueError(f"pooling='blocks' with pooled_latent: latent_dim must be hidden_size "
                         f"x depth = {blocks}, got {config.latent_dim}")
    if config.patch > 1 and not conv:
        raise ValueError("patch needs encoder='conv'")
    if config.imputer and not (config.missing and config.hide_observed > 0):
        raise ValueError("imputer needs missing and hide_observed > 0 (it learns from the "
                         "hidden elements)")
    if config.missing and (config.vocab_size > 0 or config.decoder != "repeat"):
        raise ValueError("missing values need continuous data and decoder='repeat' (an "
                         "autoregressive decoder would be fed the missing values back)")


def _encoder(config: ModelConfig) -> SequenceEncoder:
    """The token embedding (tokens), the body (recurrent or convolutional) and the map to
    the latent."""
    embedding, in_size = None, config.n_features * (2 if config.missing else 1)
    if config.vocab_size > 0:
        embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        in_size = config.embedding_dim
    body: ConvEncoder | RNNEncoder
    if config.encoder == "conv":
        output = None  # the blocks' channels are pooled (with "blocks": every block's)
        if config.pooled_latent and config.pooling != "blocks":  # the pooled outputs are
            output = None if config.latent_dim == config.hidden_size else config.latent_dim
        body = ConvEncoder(in_size * config.patch, config.hidden_size, config.depth,
                           config.kernel_size, config.pooling, output)
    else:
        body = RNNEncoder(in_size, config.hidden_size, config.num_layers, config.cell,
                          config.bidirectional, config.dropout, config.pooling)
    return SequenceEncoder(body, config.latent_dim, embedding,
                           linear=not config.pooled_latent, patch=config.patch)


def _decoder(config: ModelConfig) -> RepeatDecoder | AutoregressiveDecoder:
    tokens = config.vocab_size > 0
    out_size = config.vocab_size if tokens else config.n_features
    if config.decoder == "repeat":
        return RepeatDecoder(config.latent_dim, config.hidden_size, out_size,
                             config.num_layers, config.cell, config.dropout, config.position,
                             bottleneck=config.bottleneck)
    return AutoregressiveDecoder(config.latent_dim, config.hidden_size, out_size,
                                 config.num_layers, config.cell, config.dropout, tokens=tokens,
                                 embedding_dim=config.embedding_dim,
                                 token_dropout=config.token_dropout,
                                 bottleneck=config.bottleneck)


class AutoencoderNet(nn.Module):
    """Encoder + decoder + length head, for continuous or token sequences.

    Call arguments (training, teacher forcing):
        x: ``(B, T, F)`` floats or ``(B, T)`` token ids, right-padded; padding may hold
            anything.
        lengths: ``(B,)``.

    Returns:
        ``(output, z)``: reconstruction ``(B, T, F)`` (zeros at padding), or for tokens
        logits ``(B, T + 1, V)`` for the tokens followed by EOS; ``z`` ``(B, latent_dim)``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        _check(config)
        self.config = config
        self.tokens = config.vocab_size > 0
        # built in this order (the order the weights draw their initial values in)
        self.encoder = _encoder(config)
        self.decoder = _decoder(config)
        self.length_head = LengthHead(config.latent_dim, config.longest_predicted)
        self.imputer = None
        if config.imputer:
            self.imputer = nn.Linear(self.encoder.body.step_features,
                                     config.patch * config.n_features)
            nn.init.zeros_(self.imputer.weight)
            nn.init.zeros_(self.imputer.bias)

    @property
    def autoregressive(self) -> bool:
        return self.config.decoder == "autoregressive"

    @property
    def _fill(self) -> str:
        return "linear" if self.config.imputer else "zero"

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.config.missing:  # NaN = missing: filled, beside the observed indicator
            x = with_indicator(x, lengths, self._fill)  # (B, T, 2F)
        return self.encoder(x, lengths=lengths)  # (B, Z)

    def _imputed(self, x: torch.Tensor, lengths: torch.Tensor):
        """``(values, z)``: every element of ``x`` (NaN = missing) as the imputer sees it
        (`ModelConfig.imputer`): the linear interpolation plus the head's correction,
        ``(B, T, F)``, zero at padding; and the latent ``(B, Z)``."""
        inputs = with_indicator(x, lengths, "linear")  # (B, T, 2F)
        h, z = self.encoder.steps(inputs, lengths=lengths)  # (B, T', D)
        b, t, f = x.shape
        assert self.imputer is not None
        delta = self.imputer(h).reshape(b, -1, f)[:, :t]  # (B, T, F): patches unrolled
        valid = lengths_to_mask(lengths.to(x.device), t)[..., None]
        values = torch.where(valid, inputs[..., :f] + delta,
                             torch.zeros((), dtype=x.dtype, device=x.device))
        return values, z

    @torch.no_grad()
    def impute(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)``: the model's value of every element of ``x`` (NaN = missing), for
        the missing ones: with an imputer (`ModelConfig.imputer`), the interpolation and
        its learned correction; else the reconstruction."""
        if self.imputer is None:
            return self.reconstruct(x, lengths)
        return self._imputed(x, lengths)[0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x, lengths)
        if self.tokens:
            target = _append_eos(x, lengths)  # (B, T + 1)
            n = lengths + 1
            if self.autoregressive:
                prev = F.pad(target[:, :-1], (1, 0), value=BOS)  # (B, T + 1): BOS, x...
                return self.decoder(z, prev, n), z
            return self.decoder(z, n, target.shape[1]), z
        if self.autoregressive:
            prev = F.pad(x[:, :-1], (0, 0, 1, 0))  # (B, T, F): zeros, x_0 .. x_{T-2}
            return self.decoder(z, prev, lengths), z
        return self._repeat(z, lengths, x.shape[1]), z

    def _repeat(self, z: torch.Tensor, lengths: torch.Tensor, max_len: int | None):
        y = self.decoder(z, lengths, max_len)  # (B, T, F)
        if self.config.reverse_target:
            y = reverse_within_length(y, lengths)
        return y

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, loss_fn, reduction: str = "mean",
             weights: torch.Tensor | None = None):
        """``(loss, z, n_elements)``: the masked training loss of a batch; ``n_elements``
        is a tensor on the batch's device (reading it would wait for a GPU).

        Continuous data use ``loss_fn`` (a masked regression loss) over valid elements
        (with ``config.missing``: over observed elements; in training a share
        ``config.hide_observed`` of them is hidden from the encoder first, drawn from
        torch's global generator, and must be predicted); tokens use cross-entropy over
        the valid tokens and each row's EOS. With
        ``config.contrastive > 0`` and a ``"mean"`` or ``"sum"`` reduction, the
        crop-agreement term is added (to a sum as ``n_elements`` times the term, so that
        sum / n_elements is the same objective); its crops come from torch's global
        generator.

        ``weights`` (``(B,)``, with ``reduction="sum"``): the loss is instead the sum over
        the rows of each row's own mean loss times its weight, and ``n_elements`` the sum
        of the weights (the batch terms are added as that sum times the term), so that
        loss / n_elements is the weighted mean of the rows' means (`seqae.train`:
        ``loss_normalize``, ``sample_weight``).
        """
        if weights is not None and reduction != "sum":
            raise ValueError(f"weights need reduction='sum', got {reduction!r}")
        inner = "sequence" if weights is not None else reduction
        if self.config.missing:
            loss, z, n = self._observed_loss(x, lengths, loss_fn, inner)
        elif self.tokens:
            out, z = self(x, lengths)
            target = _append_eos(x, lengths)
            loss = masked_cross_entropy(out, target, lengths + 1, reduction=inner)
            n = lengths.sum() + len(lengths)
        else:
            out, z = self(x, lengths)
            loss = loss_fn(out, x, lengths, reduction=inner)
            n = lengths.sum() * x.shape[-1]
        if weights is not None:
            loss = (loss * weights.to(loss.dtype)).sum()
            n = weights.sum()
        if self.tokens and self.config.copies > 0 and reduction in ("mean", "sum"):
            term = self.config.copies * self._copies_term(x, lengths)
            loss = loss + (term if reduction == "mean" else term * n)
        if self.config.contrastive > 0 and reduction in ("mean", "sum"):
            if self.config.contrast == "hierarchical":
                term = self._hierarchical_term(x, lengths)
            else:
                crop, crop_lengths = random_crops(x, lengths, CROP_MIN)
                term = info_nce(z, self.encode(crop, crop_lengths))
            term = self.config.contrastive * term
            loss = loss + (term if reduction == "mean" else term * n)
        return loss, z, n

    def _observed_loss(self, x: torch.Tensor, lengths: torch.Tensor, loss_fn, reduction: str):
        """``(loss, z, n)`` over the observed elements of ``x`` (NaN = missing), some of
        them hidden from the encoder in training (`ModelConfig.hide_observed`)."""
        seen = observed(x, lengths)  # (B, T, F)
        shown, hide = x, None
        if self.training and self.config.hide_observed > 0:
            hide = seen & (torch.rand(x.shape, device=x.device) < self.config.hide_observed)
            shown = torch.where(hide, torch.full((), float("nan"), dtype=x.dtype,
                                                 device=x.device), x)
        if self.imputer is None or hide is None:
            out, z = self(shown, lengths)
            return loss_fn(out, x, seen, reduction=reduction), z, seen.sum()
        values, z = self._imputed(shown, lengths)
        out = self._repeat(z, lengths, x.shape[1])
        loss = loss_fn(out, x, seen, reduction=reduction)
        # each hidden element's imputation error, weighted as IMPUTE_WEIGHT / share
        # hidden, over the same normaliser as the reconstruction (observed elements)
        w = IMPUTE_WEIGHT / self.config.hide_observed
        if reduction in ("sum", "mean"):
            term = w * loss_fn(values, x, hide, reduction="sum")
            loss = loss + (term if reduction == "sum" else
                           term / seen.sum().clamp(min=1).to(term.dtype))
        elif reduction == "sequence":
            per_row = loss_fn(values, x, hide, reduction="sequence") * hide.flatten(1).sum(1)
            loss = loss + w * per_row / seen.flatten(1).sum(1).clamp(min=1).to(loss.dtype)
        else:  # "none": per element, the hidden ones' imputation error added
            loss = loss + w * loss_fn(values, x, hide, reduction="none")
        return loss, z, seen.sum()

    def _copies_term(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of reconstructing strings that are not the batch's: random
        crops of its rows, or random token strings of the rows' lengths (ids 4 and up:
        PAD, BOS, EOS and UNK are never drawn). Uses torch's global generator."""
        if self.config.copies_kind == "random":
            v = self.config.vocab_size
            c = torch.randint(min(4, v - 1), v, x.shape, device=x.device)
            c = torch.where(lengths_to_mask(lengths, x.shape[1]), c, torch.zeros_like(c))
            n = lengths
        else:
            c, n = random_crops(x, lengths, 0.3)
        out, _ = self(c, n)
        return masked_cross_entropy(out, _append_eos(c, n), n + 1, reduction="mean")

    def _hierarchical_term(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`hierarchical_contrastive` on two overlapping crops of each row: the conv
        encoder's per-step outputs, some input steps hidden (with patches, crops and
        hidden steps are whole patches)."""
        if self.config.missing:
            x = with_indicator(x, lengths, self._fill)  # (B, T, 2F)
        x, lengths = patchify(x, lengths, self.config.patch)
        (v1, l1, o1), (v2, l2, o2), c = overlapping_crops(x, lengths)
        reps = []
        for v, lv, off in ((v1, l1, o1), (v2, l2, o2)):
            if self.encoder.embedding is not None:  # token ids; crop padding is PAD (0)
                v = self.encoder.embedding(v)  # (B, T', E)
            hide = torch.rand(v.shape[:2], device=v.device) < self.config.hide  # (B, T')
            h, _ = self.encoder.body(v, lengths=lv, hide=hide)  # (B, T', D)
            reps.append(_take(h, off, c)[0])  # (B, C, D): the overlap, right-padded
        return hierarchical_contrastive(reps[0], reps[1], lengths_to_mask(c, reps[0].shape[1]))

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def decode(
        self, z: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None
    ) -> torch.Tensor:
        """Outputs of exactly ``lengths`` steps: ``(B, T, F)`` values or ``(B, T)`` tokens
        (greedy; EOS is not allowed before a row's length)."""
        if isinstance(self.decoder, AutoregressiveDecoder):
            out, _ = self.decoder.generate(z, 0, lengths=lengths)
        elif self.tokens:
            logits = self.decoder(z, lengths, max_len)  # (B, T, V)
            logits[..., EOS] = float("-inf")
            out = torch.where(lengths_to_mask(lengths, logits.shape[1]), logits.argmax(-1), 0)
        else:
            out = self._repeat(z, lengths, max_len)  # (B, T, F)
        if max_len is not None and out.shape[1] < max_len:
            pad = (0, max_len - out.shape[1]) if out.dim() == 2 else (0, 0, 0,
                                                                       max_len - out.shape[1])
            out = F.pad(out, pad)
        return out

    @torch.no_grad()
    def generate(self, z: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs whose lengths the model chooses: ``(out, lengths)``. Tokens stop at
        EOS (at most ``max_len`` steps); continuous data take the length head's lengths."""
        if self.tokens and isinstance(self.decoder, AutoregressiveDecoder):
            return self.decoder.generate(z, max_len)
        if self.tokens:  # repeat decoder: decode max_len steps, cut at the first EOS
            n = torch.full((z.shape[0],), max_len, device=z.device)
            tok = self.decoder(z, n, max_len).argmax(-1)  # (B, T)
            is_eos = tok == EOS
            lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1), max_len).clamp(min=1)
            tok = torch.where(lengths_to_mask(lengths, max_len), tok, 0)
            return tok, lengths
        lengths = self.length_head.predict(z)
        return self.decode(z, lengths), lengths

    def reconstruct(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Inference-time reconstruction at each input's own length (free-running for an
        autoregressive decoder)."""
        return self.decode(self.encode(x, lengths), lengths, x.shape[1])
