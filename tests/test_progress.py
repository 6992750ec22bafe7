"""`verbose` and `seqae.progress.Progress`: what fit shows, and fit's post-training pass."""

import io

import numpy as np
import pytest

import seqae
from seqae.progress import Progress

FAST = dict(latent_dim=3, hidden_size=8, batch_size=8, max_epochs=3, patience=100)


def _seqs(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return seqae.Sequences.from_list([rng.normal(size=(int(k), 2)).astype(np.float32)
                                      for k in rng.integers(1, 12, n)])


def test_default_prints_one_line_per_epoch_when_not_interactive(capsys):
    ae = seqae.SequenceAutoencoder(**FAST).fit(_seqs())
    assert ae.verbose == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(ae.history_) == 3
    for line, rec in zip(err, ae.history_, strict=True):
        assert line.startswith(f"epoch {rec['epoch']}/3  train {rec['train_loss']:.4g}")
        assert "elapsed" in line and "left" in line


def test_verbose_0_prints_nothing(capsys):
    seqae.SequenceAutoencoder(verbose=0, **FAST).fit(_seqs())
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_validation_loss_is_shown(capsys):
    s = _seqs()
    ae = seqae.SequenceAutoencoder(verbose=2, **FAST).fit(s, validation=_seqs(8, seed=1))
    lines = capsys.readouterr().err.strip().splitlines()
    ok = [f"val {r['val_loss']:.4g}" in ln for ln, r in zip(lines, ae.history_, strict=True)]
    assert ok == [True] * 3


def test_bad_verbose_is_refused_before_training():
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        seqae.SequenceAutoencoder(verbose=3, **FAST).fit(_seqs())


def test_time_left_is_budget_or_pace():
    p = Progress(1, max_epochs=10, max_time=100.0, file=io.StringIO())
    assert p.time_left(2, 20.0) == pytest.approx(80.0)  # 8 epochs at 10 s = budget's 80 s
    assert p.time_left(5, 10.0) == pytest.approx(10.0)  # 5 epochs at 2 s: pace ends first
    assert Progress(1, 10, None).time_left(4, 8.0) == pytest.approx(12.0)
    assert p.time_left(1, 150.0) == 0.0  # over budget: nothing left, never negative


def test_live_display_on_a_terminal_then_nothing_plain():
    """A rich terminal gets the live bar (with epoch and 'left'), not the plain lines."""
    from rich.console import Console

    buf = io.StringIO()
    p = Progress(1, max_epochs=2, max_time=None, file=buf)
    p._console = lambda: Console(file=buf, force_terminal=True, width=120)  # a terminal
    ae = seqae.SequenceAutoencoder(verbose=0, **{**FAST, "max_epochs": 2})
    ae.fit(_seqs(), callbacks=[p])
    screen = buf.getvalue()
    assert "epoch 2/2" in screen and "left" in screen and "train" in screen
    assert p.lines == []  # no plain lines were printed


def test_post_training_work_is_one_inference_pass():
    """After training, fit encodes each training batch once (latents for the length head
    and the scores from the same pass), and the results equal the public calls."""
    s = _seqs(40)
    calls = []

    class Count(seqae.train.Callback):
        def on_train_begin(self, model, config):
            self.model = model  # the network being fitted (the estimator gets it at the end)

        def on_train_end(self, history):
            self.handle = self.model.encoder.register_forward_hook(
                lambda *a: calls.append(1))

    ae = seqae.SequenceAutoencoder(verbose=0, validation_fraction=0, **FAST)
    counter = Count()
    ae.fit(s, callbacks=[counter])
    counter.handle.remove()
    from seqae.batching import sorted_batches

    # inference batches: length-sorted, max(4 x batch_size, 64) sequences each
    assert len(calls) == len(sorted_batches(s.lengths, max(4 * ae.batch_size, 64), "count"))
    np.testing.assert_allclose(ae.train_scores_, ae.score(s), rtol=1e-6)
    import torch

    from seqae.nn import LengthHead

    head = LengthHead(3, ae.model_config_.longest_predicted)  # refit from the public encode
    head.fit_least_squares(torch.as_tensor(ae.encode(s)), torch.as_tensor(s.lengths))
    for a, b in zip(head.state_dict().values(), ae.module_.length_head.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_long_phases_say_how_far_they_are_and_quick_ones_say_nothing(tmp_path, capsys,
                                                                     monkeypatch):
    """Issue 29 item 4: indexing a folder, validation and the scoring pass after training
    report their progress (here every call: PHASE_EVERY = 0), each ending with a 'done'
    line; at the default interval a quick fit prints its epoch lines alone."""
    from helpers import write_parquet_folder
    from seqae.stream import ParquetSource

    folder = write_parquet_folder(tmp_path / "d", rows_per_group=40)
    fast = dict(FAST, max_epochs=2, validation_fraction=0.3, batch_size=2)
    ae = seqae.SequenceAutoencoder(verbose=2, **fast).fit(ParquetSource(folder, time_col="t"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split()[1] for ln in lines] == ["1/2", "2/2"]  # epochs alone
    monkeypatch.setattr(seqae.progress, "PHASE_EVERY", 0.0)
    monkeypatch.setenv("SEQAE_CACHE_DIR", "off")  # index again (not from the cache)
    ae = seqae.SequenceAutoencoder(verbose=2, **fast).fit(ParquetSource(folder, time_col="t",
                                                                        window=200))
    lines = capsys.readouterr().err.strip().splitlines()
    rows = sum(pq_rows(f) for f in sorted(folder.glob("*.parquet")))
    index = [ln for ln in lines if ln.startswith("indexing:")]
    assert index[-1].startswith(f"indexing: done, {rows:,} rows in ")
    counts = [int(ln.split()[1].split("/")[0].replace(",", "")) for ln in index[:-1]]
    assert counts == sorted(counts) and 0 < counts[0] < rows and len(counts) >= 3
    for name in ("validation", "scoring"):
        said = [ln for ln in lines if ln.startswith(f"{name}:")]
        assert said and said[-1].startswith(f"{name}: done, ")
    n_train = ae.n_train_sequences_
    assert f"scoring: done, {n_train:,} sequences" in "\n".join(lines)
    # the order of a fit: the index, then each epoch's validation before its line
    first = [ln.split(":")[0].split()[0] for ln in lines]
    assert first.index("indexing") < first.index("validation") < first.index("epoch") \
        < first.index("scoring")
    seqae.SequenceAutoencoder(verbose=0, **fast).fit(ParquetSource(folder, time_col="t"))
    assert capsys.readouterr().err == ""  # verbose=0: nothing, phases included


def pq_rows(path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
