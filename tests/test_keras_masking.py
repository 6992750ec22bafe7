"""Seed 002: what Keras' Masking layer does to an RNN, reproduced number for number."""

import numpy as np
import pytest
import torch

from helpers import random_seqs
from seqae.nn import KerasMaskedRNN

P = 0.37
SEED002_INPUT = torch.tensor(
    [
        [[1.0, 1.0], [2, 2.0], [1.0, 1.0], [P, P], [P, P]],
        [[P, P], [1.0, 1.0], [2, 2.0], [1.0, 1.0], [P, P]],
    ]
)
# The numbers printed in seed 002.
RAW = [[-6.0, -50.0, -156.0, -272.7276, -475.83362],
       [-1.2876, -9.862801, -69.314, -213.94202, -373.54672]]
MASKED = [[-6.0, -50.0, -156.0, -156.0, -156.0],
          [0.0, -6.0, -50.0, -156.0, -156.0]]


def seed002_gru():
    rnn = KerasMaskedRNN(2, 1, cell="gru", activation=None, recurrent_activation=None,
                         reset_after=False)
    with torch.no_grad():
        rnn.kernel.fill_(1.0)  # kernel_initializer='ones'
        rnn.recurrent_kernel.zero_()  # recurrent_initializer='zeros'
        rnn.bias.fill_(1.0)  # bias_initializer='ones'
    return rnn


def test_seed002_masked_and_raw_outputs():
    rnn = seed002_gru()
    with torch.no_grad():
        masked, h = rnn(SEED002_INPUT, mask_value=P)  # float32, as Keras ran it
        raw, _ = rnn(SEED002_INPUT)
    np.testing.assert_allclose(masked.squeeze(-1).numpy(), MASKED, rtol=1e-6)
    np.testing.assert_allclose(raw.squeeze(-1).numpy(), RAW, rtol=1e-6)
    assert h.squeeze(-1).tolist() == [-156.0, -156.0]  # state after the last valid step


def test_hand_computed_first_steps():
    # GRU, linear activations, W = 1, U = 0, b = 1: s = x1 + x2 + 1, z = r = hh = s,
    # h = z * h + (1 - z) * hh.
    s1 = 1 + 1 + 1
    h1 = (1 - s1) * s1
    s2 = 2 + 2 + 1
    h2 = s2 * h1 + (1 - s2) * s2
    assert (h1, h2) == (RAW[0][0], RAW[0][1])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("reset_after", [False, True])
def test_masks_anywhere_equal_running_on_the_valid_steps_only(rng, cell, reset_after):
    """A masked step anywhere is skipped: the final state equals running the RNN on
    the valid steps alone, and outputs repeat the previous output (zeros at first)."""
    rnn = KerasMaskedRNN(3, 4, cell=cell, reset_after=reset_after)
    seq = torch.from_numpy(random_seqs(rng, [7])[0])[None]  # (1, 7, 3)
    mask = torch.tensor([[False, True, True, False, True, False, True]])
    with torch.no_grad():
        out, state = rnn(seq.masked_fill(~mask[..., None], float("nan")), mask=mask)
        out_valid, state_valid = rnn(seq[:, mask[0]])
    h = state if cell == "gru" else state[0]
    h_valid = state_valid if cell == "gru" else state_valid[0]
    torch.testing.assert_close(h, h_valid)
    assert torch.isfinite(out).all()
    assert (out[0, 0] == 0).all()  # before the first valid step
    torch.testing.assert_close(out[0, 3], out[0, 2])  # repeats the previous output
    torch.testing.assert_close(out[0, [1, 2, 4, 6]], out_valid[0])


def test_torch_gru_equivalence_for_reset_after():
    """With reset_after=True and standard activations it is torch's GRU (gate orders
    differ: Keras z, r, h vs torch r, z, n)."""
    torch.manual_seed(0)
    k = KerasMaskedRNN(3, 5, cell="gru", reset_after=True)
    ref = torch.nn.GRU(3, 5, batch_first=True)
    u = 5
    with torch.no_grad():
        def reorder(w):  # (in, 3U) keras [z, r, h] -> torch (3U, in) [r, z, n]
            return torch.cat([w[:, u : 2 * u], w[:, :u], w[:, 2 * u :]], 1).T

        ref.weight_ih_l0.copy_(reorder(k.kernel))
        ref.weight_hh_l0.copy_(reorder(k.recurrent_kernel))
        ref.bias_ih_l0.copy_(reorder(k.bias[0:1]).squeeze(1))
        ref.bias_hh_l0.copy_(reorder(k.bias[1:2]).squeeze(1))
        x = torch.randn(2, 6, 3)
        torch.testing.assert_close(k(x)[0], ref(x)[0], atol=1e-6, rtol=1e-5)


def test_argument_checks():
    rnn = seed002_gru()
    with pytest.raises(ValueError, match="one of mask, lengths or mask_value"):
        rnn(SEED002_INPUT, mask_value=P, lengths=torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="activation must be one of"):
        KerasMaskedRNN(2, 1, activation="swishy")
