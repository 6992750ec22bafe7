"""The tasks (seqae.tasks): continuous values, token ids and texts, each against numpy,
a per-sequence loop or values written by hand."""

import json

import numpy as np
import pytest
import torch

from seqae import SequenceDataError, Sequences
from seqae.scaling import Scaler
from seqae.tasks import (
    TOKEN_COPIES,
    ContinuousTask,
    TextTask,
    TokenTask,
    as_sequences,
    for_data,
    from_config,
    is_texts,
)
from seqae.vocab import UNK, CharVocab

LENGTHS = [1, 5, 3, 8, 2]


def _floats(rng, lengths=LENGTHS, f=3) -> list[np.ndarray]:
    # features on different levels and scales, so that a wrong axis shows
    scale, level = np.array([1.0, 10.0, 0.1])[:f], np.array([0.0, 5.0, -3.0])[:f]
    return [(rng.normal(size=(n, f)) * scale + level).astype(np.float32) for n in lengths]


def _numpy_stats(arrays):
    """``(mean, std, per-sequence std)`` of the valid steps: float64, then float32."""
    flat = np.concatenate(arrays).astype(np.float64)
    seq_std = np.stack([a.astype(np.float64).std(axis=0) for a in arrays])
    seq_std[seq_std == 0] = 1.0  # a sequence of one step has no spread
    return (flat.mean(axis=0).astype(np.float32), flat.std(axis=0).astype(np.float32),
            seq_std.astype(np.float32))


def _fitted(mode, arrays) -> ContinuousTask:
    task = ContinuousTask(Scaler(mode), arrays[0].shape[1], None)

    def no_max():
        raise AssertionError("a continuous task never asks for the largest id")

    return task.fit(no_max, lambda: _numpy_stats(arrays))


def _never():
    raise AssertionError("not to be computed")


# ------------------------------------------------------------------ continuous
def test_global_to_model_is_the_numpy_standardisation_and_from_model_undoes_it(rng):
    arrays = _floats(rng)
    task = _fitted("global", arrays)
    mean, std, _ = _numpy_stats(arrays)
    np.testing.assert_array_equal(task.scaler.mean_, mean)
    np.testing.assert_array_equal(task.scaler.std_, std)
    seqs = Sequences.from_list(arrays)
    scaled, stats = task.to_model(seqs)
    for a, got in zip(arrays, scaled, strict=True):
        np.testing.assert_allclose(got, (a - mean) / std, rtol=1e-6, atol=1e-6)
    back = task.from_model(scaled, stats)
    np.testing.assert_array_equal(back.offsets, seqs.offsets)
    for a, got in zip(arrays, back, strict=True):
        np.testing.assert_allclose(got, a, rtol=1e-5, atol=1e-5)


def test_sequence_to_model_standardises_each_sequence_by_its_own_statistics(rng):
    arrays = _floats(rng)
    task = _fitted("sequence", arrays)
    scaled, stats = task.to_model(Sequences.from_list(arrays))
    for i, (a, got) in enumerate(zip(arrays, scaled, strict=True)):
        m = a.astype(np.float64).mean(axis=0)
        s = a.astype(np.float64).std(axis=0)
        s[s == 0] = 1.0  # the single-step sequence: centred, not divided by 0
        np.testing.assert_allclose(got, (a - m) / s, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats[0][i], m, rtol=1e-6)
        np.testing.assert_allclose(stats[1][i], s, rtol=1e-6)
    assert (scaled[0] == 0).all()  # length 1: exactly its own mean
    back = task.from_model(scaled, stats)
    for a, got in zip(arrays, back, strict=True):
        np.testing.assert_allclose(got, a, rtol=1e-5, atol=1e-5)


def test_decoded_puts_back_the_global_statistics_and_nothing_for_sequence_mode(rng):
    arrays = _floats(rng)
    z = Sequences.from_list([rng.normal(size=(n, 3)).astype(np.float32) for n in (1, 4)])
    task = _fitted("global", arrays)
    mean, std, _ = _numpy_stats(arrays)
    out = task.decoded(z)
    np.testing.assert_array_equal(out.lengths, [1, 4])
    np.testing.assert_allclose(out.values, z.values * std + mean, rtol=1e-6, atol=1e-6)
    # a latent carries no level or scale of its own: "sequence" decodes standardised
    np.testing.assert_array_equal(_fitted("sequence", arrays).decoded(z).values, z.values)


def test_score_scale_and_head_of_a_continuous_task(rng):
    arrays = _floats(rng)
    task = _fitted("global", arrays)
    np.testing.assert_array_equal(task.score_scale(torch.device("cpu")).numpy(),
                                  _numpy_stats(arrays)[1])
    assert task.head("auto") == {"vocab_size": 0}


def test_continuous_check_names_the_feature_counts(rng):
    task = _fitted("global", _floats(rng))
    task.check(Sequences.from_list(_floats(rng, [2, 3])))  # fits: no error
    with pytest.raises(SequenceDataError, match="fitted on 3 features; the data have 2 features"):
        task.check(Sequences.from_list([np.zeros((4, 2), np.float32)]))
    with pytest.raises(SequenceDataError, match="fitted on 3 features; the data have tokens"):
        task.check(Sequences.from_list([np.array([4, 5, 6])]))


def test_a_task_fitted_on_values_refuses_texts():
    task = ContinuousTask(Scaler("global"), 1, None)
    with pytest.raises(SequenceDataError, match="not fitted on texts"):
        task.sequences(["abc"])
    with pytest.raises(SequenceDataError, match="not fitted on texts"):
        TokenTask(10).sequences(["abc"])


# ------------------------------------------------------------------ tokens
def test_token_check_names_the_sequence_the_token_and_the_step():
    task = TokenTask(10)
    task.check(Sequences.from_list([np.array([4, 9]), np.array([0, 1, 2, 3])]))
    seqs = Sequences.from_list([np.array([4, 5]), np.array([6, 7, 12, 3, 11])],
                               ids=["a", "b"])
    with pytest.raises(SequenceDataError, match=r"sequence 1 \(id 'b'\) has token 12 at step 2, "
                                                r"outside the vocabulary \(0\.\.9\)") as e:
        task.check(seqs)
    assert e.value.index == 1
    with pytest.raises(SequenceDataError, match="fitted on tokens; the data have 2 features"):
        task.check(Sequences.from_list([np.zeros((3, 2), np.float32)]))


@pytest.mark.parametrize("largest, size", [(0, 4), (2, 4), (3, 4), (4, 5), (41, 42)])
def test_token_fit_vocabulary_is_the_largest_id_plus_one_and_at_least_four(largest, size):
    task = TokenTask(n_features=1).fit(lambda: largest, _never)
    assert task.vocab_size == size


def test_a_known_vocabulary_size_is_kept_without_reading_the_data():
    assert TokenTask(17).fit(_never, _never).vocab_size == 17


def test_tokens_pass_through_model_units_unchanged():
    seqs = Sequences.from_list([np.array([4, 5, 6]), np.array([7])])
    task = TokenTask(8)
    out, stats = task.to_model(seqs)
    np.testing.assert_array_equal(out.values, seqs.values)
    assert stats is None
    np.testing.assert_array_equal(task.from_model(out, stats).values, seqs.values)
    np.testing.assert_array_equal(task.decoded(out).values, seqs.values)
    assert task.score_scale(torch.device("cpu")) is None
    assert task.head("auto") == {"vocab_size": 8, "copies": TOKEN_COPIES}
    assert task.head(0.25) == {"vocab_size": 8, "copies": 0.25}


# ------------------------------------------------------------------ texts
def test_text_sequences_error_names_the_text_and_the_character_map_gives_unk():
    vocab = CharVocab.from_texts(["abc", "cab"])  # equal counts: a=4, b=5, c=6
    task = TextTask(vocab)
    assert task.vocab_size == 7
    got = task.sequences(["cab", "a"])
    assert [s.tolist() for s in got] == [[6, 4, 5], [4]]
    with pytest.raises(SequenceDataError, match=r"text 1 \('cax'\) has character 'x'") as e:
        task.sequences(["ab", "cax"])
    assert e.value.index == 1
    mapped = task.sequences(["ab", "cax"], unknown="map")
    assert UNK == 3
    assert [s.tolist() for s in mapped] == [[4, 5], [6, 4, 3]]
    ids = Sequences.from_list([np.array([4, 4])])
    assert task.sequences(ids) is ids  # token ids pass as they are


def test_to_user_gives_texts_only_for_texts():
    task = TextTask(CharVocab.from_texts(["abc"]))
    out = Sequences.from_list([np.array([6, 4, 5]), np.array([4, 3])])
    assert task.to_user(out, ["xyz", "ab"]) == ["cab", "a?"]
    assert task.to_user(out, out) is out
    cont = ContinuousTask(Scaler("global"), 1, None)
    assert cont.to_user(out, out) is out


# ------------------------------------------------------------------ saved config
def test_continuous_config_round_trip(rng):
    arrays = _floats(rng)
    task = ContinuousTask(Scaler("auto"), 3, ["x", "y", "z"]).fit(_never,
                                                                  lambda: _numpy_stats(arrays))
    config = json.loads(json.dumps(task.to_config()))  # as a model folder holds it
    back = from_config(config)
    assert isinstance(back, ContinuousTask) and back.kind == "continuous"
    assert (back.n_features, back.feature_names) == (3, ["x", "y", "z"])
    assert (back.scaler.mode, back.scaler.mode_) == ("auto", task.scaler.mode_)
    assert back.scaler.spread_ == task.scaler.spread_
    np.testing.assert_array_equal(back.scaler.mean_, task.scaler.mean_)
    np.testing.assert_array_equal(back.scaler.std_, task.scaler.std_)
    seqs = Sequences.from_list(arrays)
    np.testing.assert_array_equal(back.to_model(seqs)[0].values, task.to_model(seqs)[0].values)


def test_token_and_text_config_round_trip():
    tok = from_config(json.loads(json.dumps(TokenTask(12, 1).to_config())))
    assert type(tok) is TokenTask and (tok.vocab_size, tok.n_features, tok.vocab) == (12, 1, None)
    text = TextTask(CharVocab.from_texts(["hello", "world"]))
    back = from_config(json.loads(json.dumps(text.to_config())))
    assert type(back) is TextTask and back.kind == "texts"
    assert back.vocab.chars == text.vocab.chars and back.vocab_size == len(text.vocab)
    assert back.vocab.decode(back.sequences(["lower"])) == ["lower"]


def test_a_config_written_before_the_scaler_entry_reads_its_global_statistics():
    config = {"n_features": 2, "feature_names": None, "vocab_size": 0, "vocab": None,
              "params": {"normalize": True}, "mean": [1.0, -2.0], "std": [2.0, 4.0]}
    task = from_config(config)
    assert (task.scaler.mode, task.scaler.mode_) == ("global", "global")
    seqs = Sequences.from_list([np.array([[3.0, 2.0], [1.0, -2.0]], np.float32)])
    np.testing.assert_array_equal(task.to_model(seqs)[0].values, [[1.0, 1.0], [0.0, 0.0]])
    per_seq = from_config({**config, "params": {"normalize": "sequence"}})
    assert per_seq.scaler.mode_ == "sequence"


# ------------------------------------------------------------------ for_data
def test_for_data_picks_the_task_of_each_kind_of_input(rng):
    texts = ["ab", "ba", "abc"]
    task, seqs = for_data(texts, "auto", "error")
    assert type(task) is TextTask and task.vocab.decode(seqs) == texts
    tokens = Sequences.from_list([np.array([4, 5]), np.array([9])])
    task, seqs = for_data(tokens, "auto", "error")
    assert type(task) is TokenTask and seqs is tokens and task.vocab_size == 0  # fit sets it
    floats = Sequences.from_list(_floats(rng), feature_names=["a", "b", "c"])
    task, seqs = for_data(floats, "global", "error")
    assert type(task) is ContinuousTask and seqs is floats
    assert (task.n_features, task.feature_names, task.scaler.mode) == (3, ["a", "b", "c"],
                                                                      "global")
    arrays = _floats(rng, [2, 4], f=2)
    task, seqs = for_data(arrays, "auto", "error")
    assert type(task) is ContinuousTask and task.n_features == 2
    for a, s in zip(arrays, seqs, strict=True):
        np.testing.assert_array_equal(s, a)
    task, seqs = for_data([np.array([4, 7, 5])], "auto", "error")  # int arrays: tokens
    assert type(task) is TokenTask and seqs.values.tolist() == [4, 7, 5]


def test_for_data_refuses_a_padded_array_naming_from_padded():
    with pytest.raises(TypeError, match=r"got ndarray; .*Sequences\.from_padded"):
        for_data(np.zeros((3, 5, 2), np.float32), "auto", "error")
    with pytest.raises(TypeError, match="from_padded"):
        as_sequences(np.zeros((3, 5)))


def test_texts_are_a_non_empty_list_of_strings_only():
    assert is_texts(["a"]) and is_texts(("a", "bc"))
    assert not is_texts([]) and not is_texts("abc") and not is_texts(["a", 1])
    assert not is_texts([np.array([1, 2])])
