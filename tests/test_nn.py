import numpy as np
import pytest
import torch
from torch import nn

from helpers import check_padding_invariance, random_seqs
from seqae.losses import info_nce, masked_mse
from seqae.nn import (
    AutoencoderNet,
    ConvEncoder,
    ModelConfig,
    RepeatDecoder,
    RNNEncoder,
    SequenceEncoder,
)
from seqae.nn.encoders import gather_last, reverse_within_length
from seqae.nn.model import random_crops

LENGTHS = [1, 6, 3, 9, 1, 4]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("pooling", ["last", "mean+max"])
def test_encoder_padding_invariance(rng, cell, bidirectional, num_layers, pooling):
    enc = RNNEncoder(3, 5, num_layers, cell, bidirectional, pooling=pooling).eval()
    seqs = random_seqs(rng, LENGTHS)
    check_padding_invariance(lambda x, lens: enc(x, lens)[1], seqs)  # summary (B, D)
    check_padding_invariance(lambda x, lens: enc(x, lens)[0], seqs)  # outputs (B, T, D)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_matches_pack_padded_reference(rng, cell):
    """Independent reference: torch's own bidirectional RNN on packed sequences, with
    the same weights. Its backward direction starts at each sequence's last step."""
    layers, hidden = 2, 4
    enc = RNNEncoder(3, hidden, layers, cell, bidirectional=True).eval()
    ref = getattr(nn, cell.upper())(3, hidden, layers, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for layer in range(layers):
            for d, mods in (("", enc.fwd), ("_reverse", enc.bwd)):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(ref, f"{name}_l{layer}{d}").copy_(getattr(mods[layer], f"{name}_l0"))
    seqs = random_seqs(rng, LENGTHS)
    lengths = torch.tensor(LENGTHS)
    x = torch.zeros(len(seqs), max(LENGTHS), 3)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = torch.from_numpy(s)
    with torch.no_grad():
        out, summary = enc(x, lengths)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        ref_out, h = ref(packed)
        ref_out, _ = nn.utils.rnn.pad_packed_sequence(ref_out, batch_first=True)
    h_n = h[0] if cell == "lstm" else h  # (layers*2, B, H)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(summary, torch.cat([h_n[-2], h_n[-1]], -1), atol=1e-5, rtol=1e-5)


def test_reverse_and_gather_helpers():
    x = torch.arange(8.0).view(2, 4, 1)
    lens = torch.tensor([3, 1])
    r = reverse_within_length(x, lens)
    assert r[:, :, 0].tolist() == [[2, 1, 0, 3], [4, 5, 6, 7]]
    assert torch.equal(reverse_within_length(r, lens), x)
    assert gather_last(x, torch.tensor([3, 0]))[:, 0].tolist() == [2.0, 0.0]


def test_encoder_refuses_masks_with_gaps():
    enc = RNNEncoder(2, 3)
    mask = torch.tensor([[True, False, True]])
    with pytest.raises(ValueError, match="right-padded"):
        enc(torch.zeros(1, 3, 2), mask=mask)
    with pytest.raises(ValueError, match="not both"):
        enc(torch.zeros(1, 3, 2), lengths=torch.tensor([3]), mask=mask[:, :1].expand(1, 3))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_repeat_decoder_own_length_and_invariance(cell):
    """Seed 000, option 1: the latent repeated to each sequence's own length."""
    dec = RepeatDecoder(4, 6, 2, num_layers=2, cell=cell).eval()
    z = torch.randn(3, 4)
    lens = torch.tensor([2, 5, 1])
    with torch.no_grad():
        y = dec(z, lens)
        assert y.shape == (3, 5, 2)
        for b in range(3):  # each row alone at its own length = its slice of the batch
            alone = dec(z[b : b + 1], lens[b : b + 1])
            torch.testing.assert_close(y[b, : lens[b]], alone[0], atol=1e-6, rtol=1e-6)
            assert (y[b, lens[b] :] == 0).all()
        # decoding at other lengths than the input is a plain call
        assert dec(z, torch.tensor([7, 7, 7])).shape == (3, 7, 2)
        padded = dec(z, lens, max_len=9)
        torch.testing.assert_close(padded[:, :5], y)
        assert (padded[:, 5:] == 0).all()


def test_outputs_past_length_carry_no_gradient():
    """Seed 000, option 3 (crop the outputs): padded outputs are zero and get no gradient,
    even when the target's padding holds NaN; the loss equals a per-sequence crop."""
    dec = RepeatDecoder(4, 6, 2)
    z = torch.randn(3, 4, requires_grad=True)
    lens = torch.tensor([2, 5, 1])
    y = dec(z, lens, max_len=6)
    y.retain_grad()
    target = torch.randn(3, 6, 2)
    target[0, 2:] = float("nan")
    target[2, 1:] = float("nan")
    loss = masked_mse(y, target, lens)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    for b, n in enumerate(lens.tolist()):
        assert (y[b, n:] == 0).all() and (y.grad[b, n:] == 0).all()
    cropped = torch.cat([((y[b, :n] - target[b, :n]) ** 2).ravel()
                         for b, n in enumerate(lens.tolist())]).mean()
    torch.testing.assert_close(loss, cropped)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("reverse_target", [False, True])
def test_autoencoder_net_padding_invariance(rng, bidirectional, reverse_target):
    cfg = ModelConfig(n_features=3, latent_dim=4, hidden_size=6, bidirectional=bidirectional,
                      reverse_target=reverse_target, pooling="last+mean")
    net = AutoencoderNet(cfg).eval()
    seqs = random_seqs(rng, LENGTHS)
    worst = check_padding_invariance(lambda x, lens: net(x, lens)[0], seqs)
    worst = max(worst, check_padding_invariance(lambda x, lens: net(x, lens)[1], seqs))
    assert worst < 1e-5


def test_nan_padding_gives_finite_gradients(rng):
    net = AutoencoderNet(ModelConfig(n_features=3, latent_dim=4, hidden_size=6))
    x = torch.randn(3, 8, 3)
    lens = torch.tensor([8, 3, 1])
    x[1, 3:] = float("nan")
    x[2, 1:] = float("nan")
    recon, z = net(x, lens)
    loss = masked_mse(recon, x, lens)
    loss.backward()
    assert torch.isfinite(loss)
    for p in net.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()


def test_token_embedding_encoder(rng):
    emb = nn.Embedding(10, 4, padding_idx=0)
    enc = SequenceEncoder(RNNEncoder(4, 5, bidirectional=True), 3, embedding=emb).eval()
    tokens = torch.tensor([[3, 4, 5, -1], [7, 9999, 9999, 9999]])  # padding: anything
    with torch.no_grad():
        z = enc(tokens, lengths=torch.tensor([3, 1]))
        z0 = enc(tokens[:1, :3], lengths=torch.tensor([3]))
        z1 = enc(tokens[1:, :1], lengths=torch.tensor([1]))
    torch.testing.assert_close(z, torch.cat([z0, z1]), atol=1e-6, rtol=1e-6)


def test_length_head_least_squares_matches_numpy(rng):
    from seqae.nn import LengthHead

    z = rng.normal(size=(50, 4))
    lengths = np.exp(1.5 + z @ np.array([0.3, -0.2, 0.1, 0.0]))  # log-linear in z
    lengths = np.maximum(np.round(lengths), 1)
    head = LengthHead(4, 1000)
    head.fit_least_squares(torch.tensor(z, dtype=torch.float32), torch.tensor(lengths),
                           ridge=0.0)
    X = np.hstack([z, np.ones((50, 1))])
    coef, *_ = np.linalg.lstsq(X, np.log(lengths), rcond=None)
    np.testing.assert_allclose(head.linear.weight.detach().numpy()[0], coef[:4], atol=1e-4)
    assert head.linear.bias.item() == pytest.approx(coef[4], abs=1e-4)
    pred = head.predict(torch.tensor(z, dtype=torch.float32)).numpy()
    assert np.mean(np.abs(pred - lengths) <= 1) > 0.8


# ------------------------------------------------------------------ convolutional encoder
LONG_LENGTHS = [1, 6, 3, 40, 1, 17]


@pytest.mark.parametrize("depth", [1, 4])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("pooling", ["max", "last+mean", "blocks"])
@pytest.mark.parametrize("output_size", [None, 7])
def test_conv_encoder_padding_invariance(rng, depth, kernel_size, pooling, output_size):
    if pooling == "blocks" and output_size:
        with pytest.raises(ValueError, match="no output_size"):
            ConvEncoder(3, 5, depth=depth, pooling=pooling, output_size=output_size)
        return
    enc = ConvEncoder(3, 5, depth=depth, kernel_size=kernel_size, pooling=pooling,
                      output_size=output_size).eval()
    seqs = random_seqs(rng, LONG_LENGTHS)
    check_padding_invariance(lambda x, lens: enc(x, lens)[1], seqs)  # summary (B, D)
    check_padding_invariance(lambda x, lens: enc(x, lens)[0], seqs)  # outputs (B, T, D)


def _conv_reference(enc: ConvEncoder, s: np.ndarray, blocks: bool = False):
    """Independent reference for one unpadded sequence: each dilated convolution written
    out as a sum over taps in numpy, reading zeros outside the sequence."""
    def conv(h, conv_mod):  # h (T, C)
        w = conv_mod.weight.detach().numpy()  # (C_out, C_in, K)
        d, k = conv_mod.dilation[0], w.shape[2]
        out = np.tile(conv_mod.bias.detach().numpy(), (len(h), 1))
        for j in range(k):
            shift = (j - (k - 1) // 2) * d
            src = np.zeros_like(h)
            lo, hi = max(0, -shift), min(len(h), len(h) - shift)
            if lo < hi:
                src[lo:hi] = h[lo + shift : hi + shift]
            out += src @ w[:, :, j].T
        return out

    def gelu(v):
        return np.asarray(torch.nn.functional.gelu(torch.from_numpy(v)))

    h = s @ enc.proj.weight.detach().numpy().T + enc.proj.bias.detach().numpy()
    per_block = []
    for block in enc.blocks:
        h = h + conv(gelu(conv(gelu(h), block.conv1)), block.conv2)
        per_block.append(h)
    return (h, per_block) if blocks else h


def test_conv_encoder_matches_numpy_reference(rng):
    enc = ConvEncoder(2, 4, depth=3, kernel_size=3, pooling="max+mean").eval()
    seqs = random_seqs(rng, [1, 5, 23], n_features=2)
    x = torch.zeros(3, 23, 2)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = torch.from_numpy(s)
    with torch.no_grad():
        out, summary = enc(x, lengths=torch.tensor([1, 5, 23]))
    for b, s in enumerate(seqs):
        ref = _conv_reference(enc, s.astype(np.float64))
        np.testing.assert_allclose(out[b, : len(s)].numpy(), ref, atol=1e-5)
        np.testing.assert_allclose(summary[b].numpy(),
                                   np.concatenate([ref.max(0), ref.mean(0)]), atol=1e-5)


def test_blocks_pooling_is_every_blocks_max_over_the_valid_steps(rng):
    enc = ConvEncoder(2, 4, depth=3, pooling="blocks").eval()
    assert enc.out_features == 12
    seqs = random_seqs(rng, [1, 5, 23], n_features=2)
    x = torch.full((3, 23, 2), float("nan"))  # NaN padding must not reach the maxima
    for b, s in enumerate(seqs):
        x[b, : len(s)] = torch.from_numpy(s)
    with torch.no_grad():
        out, summary = enc(x, lengths=torch.tensor([1, 5, 23]))
    for b, s in enumerate(seqs):
        last, per_block = _conv_reference(enc, s.astype(np.float64), blocks=True)
        np.testing.assert_allclose(out[b, : len(s)].numpy(), last, atol=1e-5)
        np.testing.assert_allclose(summary[b].numpy(),
                                   np.concatenate([h.max(0) for h in per_block]), atol=1e-5)


def test_conv_depth_covers_length():
    from seqae.nn.encoders import conv_depth_for

    for n in (1, 24, 150, 427, 1460, 10_000):
        d = conv_depth_for(n)
        field = 1 + 4 * (2**d - 1)
        assert field >= n or d == 10
        assert d == 2 or 1 + 4 * (2 ** (d - 1) - 1) < n  # the fewest that cover it


@pytest.mark.parametrize("encoder", ["rnn", "conv"])
def test_autoencoder_net_with_contrastive_term(rng, encoder):
    """The crop-agreement term is added to the reconstruction loss, to a sum as n times
    the term; the network's outputs stay padding-invariant."""
    cfg = ModelConfig(n_features=3, latent_dim=4, hidden_size=6, encoder=encoder, depth=2,
                      pooling="max", contrastive=0.5)
    net = AutoencoderNet(cfg)
    seqs = random_seqs(rng, LENGTHS)
    x, lens = torch.zeros(6, 9, 3), torch.tensor(LENGTHS)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = torch.from_numpy(s)
    net.eval()
    check_padding_invariance(lambda x, lens: net(x, lens)[0], seqs)
    check_padding_invariance(lambda x, lens: net(x, lens)[1], seqs)
    torch.manual_seed(3)
    total_sum, _, n = net.loss(x, lens, masked_mse, reduction="sum")
    net.train()
    torch.manual_seed(3)
    with_term, z, _ = net.loss(x, lens, masked_mse)
    recon = masked_mse(net(x, lens)[0], x, lens)
    torch.manual_seed(3)
    crop, crop_lens = random_crops(x, lens, 0.5)
    expected = recon + 0.5 * info_nce(z, net.encode(crop, crop_lens))
    torch.testing.assert_close(with_term, expected)
    torch.testing.assert_close(total_sum / n, expected)  # no dropout: same in eval mode
    with_term.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_random_crops_stay_within_each_sequence():
    lens = torch.tensor([1, 2, 10, 50])
    x = torch.arange(4 * 50, dtype=torch.float32).view(4, 50, 1) + 1  # no zero inside
    x[0, 1:] = float("nan")
    x[1, 2:] = float("nan")
    x[2, 10:] = float("nan")
    for _ in range(50):
        crops, c = random_crops(x, lens, 0.5)
        assert torch.isfinite(crops).all()  # padding is never read
        for b in range(4):
            n, L = int(c[b]), int(lens[b])
            assert (L + 1) // 2 <= n <= L or (L == 1 and n == 1)
            row = crops[b, :n, 0]
            start = int(row[0] - x[b, 0, 0])
            assert 0 <= start <= L - n
            assert torch.equal(row, x[b, start : start + n, 0])  # contiguous
            assert (crops[b, n:] == 0).all()


def test_info_nce_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.1], [0.3, 1.0], [1.0, 1.2]])
    loss = info_nce(a, b, temperature=0.5)
    an = a.numpy() / np.linalg.norm(a.numpy(), axis=1, keepdims=True)
    bn = b.numpy() / np.linalg.norm(b.numpy(), axis=1, keepdims=True)
    s = an @ bn.T / 0.5

    def ce(m):  # mean over rows of -log softmax at the diagonal
        return np.mean([np.log(np.exp(r).sum()) - r[i] for i, r in enumerate(m)])

    assert float(loss) == pytest.approx(0.5 * (ce(s) + ce(s.T)), rel=1e-5)
    assert float(info_nce(a[:1], b[:1])) == 0.0


def test_overlapping_crops_share_a_stretch_of_each_sequence():
    from seqae.nn.model import overlapping_crops

    lens = torch.tensor([1, 2, 7, 30])
    x = torch.arange(4 * 30, dtype=torch.float32).view(4, 30, 1) + 1
    for b, n in enumerate(lens.tolist()):
        x[b, n:] = float("nan")
    for _ in range(50):
        (v1, l1, o1), (v2, l2, o2), c = overlapping_crops(x, lens)
        assert torch.isfinite(v1).all() and torch.isfinite(v2).all()
        for b, n in enumerate(lens.tolist()):
            a = int(v1[b, 0, 0] - x[b, 0, 0])  # where each crop starts in its sequence
            s = int(v2[b, 0, 0] - x[b, 0, 0])
            assert 0 <= a <= s and s + int(c[b]) <= n and min(2, n) <= int(c[b])
            assert a + int(l1[b]) == s + int(c[b]) and s + int(l2[b]) <= n
            assert int(o1[b]) == s - a and int(o2[b]) == 0
            assert torch.equal(v1[b, o1[b] : o1[b] + c[b]], v2[b, : c[b]])  # the overlap
            assert (v1[b, l1[b]:] == 0).all() and (v2[b, l2[b]:] == 0).all()


def test_hierarchical_term_and_hidden_steps(rng):
    """hide=None equals hiding nothing; hidden steps change the outputs; the model's
    hierarchical term is finite with NaN padding and lengths 1."""
    enc = ConvEncoder(2, 4, depth=2).eval()
    x = torch.randn(2, 6, 2)
    lens = torch.tensor([6, 3])
    with torch.no_grad():
        ref = enc(x, lens)[0]
        none = enc(x, lens, hide=torch.zeros(2, 6, dtype=torch.bool))[0]
        hid = enc(x, lens, hide=torch.tensor([[False, True] + [False] * 4] * 2))[0]
    torch.testing.assert_close(none, ref)
    assert not torch.allclose(hid[0], ref[0]) and (hid[1, 3:] == 0).all()
    cfg = ModelConfig(n_features=2, latent_dim=4, hidden_size=6, encoder="conv", depth=2,
                      pooling="max", contrastive=1.0, contrast="hierarchical")
    net = AutoencoderNet(cfg)
    x = torch.randn(3, 9, 2)
    lens = torch.tensor([9, 1, 4])
    x[1, 1:], x[2, 4:] = float("nan"), float("nan")
    loss, _, _ = net.loss(x, lens, masked_mse)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    net.eval()
    seqs = random_seqs(rng, LONG_LENGTHS, n_features=2)
    check_padding_invariance(lambda x, lens: net(x, lens)[1], seqs)
    with pytest.raises(ValueError, match="needs encoder='conv'"):
        AutoencoderNet(ModelConfig(n_features=2, contrast="hierarchical"))


def test_hierarchical_term_on_tokens():
    """Long token sequences get the conv recipe too: the crops go through the embedding."""
    cfg = ModelConfig(n_features=1, latent_dim=4, hidden_size=6, encoder="conv", depth=2,
                      pooling="max", contrastive=1.0, contrast="hierarchical", vocab_size=9)
    net = AutoencoderNet(cfg)
    x = torch.tensor([[4, 5, 6, 7, 8], [5, 6, 9999, 9999, 9999]])  # padding: anything
    loss, _, _ = net.loss(x, torch.tensor([5, 2]), None)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(net.encoder.embedding.weight.grad).all()


# ------------------------------------------------------------------ patches
@pytest.mark.parametrize("patch", [2, 3, 7])
def test_patchify_against_numpy(rng, patch):
    from seqae.nn import patchify

    seqs = random_seqs(rng, [1, 5, 9, 14], n_features=2)
    x = torch.full((4, 14, 2), float("nan"))
    for b, s in enumerate(seqs):
        x[b, : len(s)] = torch.from_numpy(s)
    out, n = patchify(x, torch.tensor([1, 5, 9, 14]), patch)
    for b, s in enumerate(seqs):
        k = -(-len(s) // patch)
        ref = np.zeros((k * patch, 2), np.float32)
        ref[: len(s)] = s
        assert n[b] == k
        np.testing.assert_array_equal(out[b, :k].numpy(), ref.reshape(k, patch * 2))
        assert (out[b, k:] == 0).all()  # whole padded patches are zero too


@pytest.mark.parametrize("patch", [2, 5])
def test_patched_conv_encoder_padding_invariance(rng, patch):
    from seqae.nn import SequenceEncoder

    enc = SequenceEncoder(ConvEncoder(3 * patch, 6, depth=3), 6, linear=False,
                          patch=patch).eval()
    seqs = random_seqs(rng, LONG_LENGTHS)
    check_padding_invariance(lambda x, lens: enc(x, lengths=lens), seqs)


def test_patch_is_refused_for_tokens_and_rnn():
    from seqae.nn import AutoencoderNet, ModelConfig, SequenceEncoder

    with pytest.raises(ValueError, match="patch"):
        SequenceEncoder(ConvEncoder(4, 4), 4, torch.nn.Embedding(5, 4), patch=2)
    with pytest.raises(ValueError, match="patch needs encoder='conv'"):
        AutoencoderNet(ModelConfig(1, patch=2))


# bfloat16 keeps 8 bits of mantissa: one rounding is up to 2^-9 of a value, and outputs of
# magnitude <= 1 after a few layers of them differ by a few 2^-8; 2e-2 leaves room for that
# and is still far below the effect of a leak (padding of 1e6 or NaN).
BF16_ATOL = 2e-2


@pytest.mark.parametrize("encoder", ["rnn", "conv"])
def test_padding_invariance_under_bf16_autocast(rng, encoder):
    """Under bf16 autocast on the CPU, a sequence's outputs and latent do not depend on
    the padding or the batch around it (within `BF16_ATOL`), padded outputs stay exactly
    zero, and they are within `BF16_ATOL` of the float32 results."""
    from seqae.train import autocast
    cfg = ModelConfig(n_features=3, latent_dim=4, hidden_size=6, encoder=encoder,
                      pooling="last+mean" if encoder == "rnn" else "max")
    net = AutoencoderNet(cfg).eval()
    seqs = random_seqs(rng, LENGTHS)
    cpu = torch.device("cpu")
    for part in (0, 1):
        with autocast(cpu, "bf16"):
            assert net(torch.from_numpy(seqs[3][None]), torch.tensor([9]))[part].dtype \
                == torch.bfloat16  # autocast is on
            check_padding_invariance(lambda x, lens, p=part: net(x, lens)[p].float(), seqs,
                                     atol=BF16_ATOL)
        with torch.no_grad():
            for s in seqs:
                x, lens = torch.from_numpy(s[None]), torch.tensor([len(s)])
                ref = net(x, lens)[part]
                with autocast(cpu, "bf16"):
                    got = net(x, lens)[part].float()
                torch.testing.assert_close(got, ref, atol=BF16_ATOL, rtol=0)
