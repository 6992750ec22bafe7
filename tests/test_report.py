"""report.html from `seqae demo` and `seqae plot`, opened in a real headless browser
(Debian's chromium): its sections are there, every image loads, and a screenshot is
taken (kept under $SEQAE_ARTIFACTS when that is set)."""

import json
import os
import shutil
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_cli import run

CHROMIUM = os.environ.get("SEQAE_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine: `apt-get install chromium` "
    "(as .ci/run does) to run the browser tests")

# Appended to a copy of the page: after load, record what the browser sees.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, ok: i.complete &&
      i.naturalWidth > 0, w: i.naturalWidth, h: i.naturalHeight}));
  const sections = [...document.querySelectorAll('section')].map(s => s.id);
  const rows = [...document.querySelectorAll('#top tr')].slice(1).map(
      r => [...r.cells].map(c => c.textContent));
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({imgs, sections, rows, title: document.title});
  document.body.appendChild(pre);
});
</script>"""


def _browse(page, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([CHROMIUM, *flags, "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    import html

    seen = json.loads(html.unescape(dom[start:dom.index("</pre>", start)]))
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,2600", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    if os.environ.get("SEQAE_ARTIFACTS"):
        dest = os.path.join(os.environ["SEQAE_ARTIFACTS"], f"{page.parent.name}-report.png")
        os.makedirs(os.environ["SEQAE_ARTIFACTS"], exist_ok=True)
        shutil.copy(shot, dest)
    return seen, shot


def _check_screenshot(shot):
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)  # a real PNG, decoded
    assert img.shape[0] == 2600 and img.shape[1] == 1200
    assert img[..., :3].std() > 0.05  # not a blank page


@needs_browser
def test_demo_report_in_a_browser(tmp_path):
    out = tmp_path / "demo"
    run("-q", "demo", "--out", out, "--max-time", "4", "--n", "120")
    page = out / "report.html"
    assert "<img" in page.read_text() and 'src="data:image/png;base64,' in page.read_text()
    assert "file:" not in page.read_text() and "http" not in page.read_text()  # self-contained
    seen, shot = _browse(page, tmp_path)
    assert seen["title"] == "seqae demo report"
    assert seen["sections"] == ["summary", "figures", "top", "files"]
    assert [i["alt"] for i in seen["imgs"]] == ["loss", "reconstructions", "embeddings",
                                                "scores"]
    assert all(i["ok"] and i["w"] > 200 and i["h"] > 100 for i in seen["imgs"]), seen["imgs"]
    scores = pq.read_table(out / "scores.parquet")
    s = scores.column("score").to_numpy()
    order = np.argsort(-s, kind="stable")[:20]
    ids = scores.column("id").to_numpy(zero_copy_only=False)
    assert [r[1] for r in seen["rows"]] == [str(ids[i]) for i in order]  # highest first
    assert [r[2] for r in seen["rows"]] == [str(v) for v in scores.column(
        "label").to_numpy(zero_copy_only=False)[order]]
    np.testing.assert_allclose([float(r[4]) for r in seen["rows"]], s[order], rtol=1e-4)
    _check_screenshot(shot)


@needs_browser
def test_plot_report_in_a_browser(tmp_path):
    from seqae.datasets import demo_table

    pq.write_table(demo_table(n=40, seed=3), tmp_path / "d.parquet")
    run("-q", "train", tmp_path / "d.parquet", "--out", tmp_path / "m", "--time-col", "t",
        "--label-col", "label", "--epochs", "2", "--hidden-size", "8", "--latent-dim", "3")
    run("-q", "plot", tmp_path / "m", tmp_path / "d.parquet", "--out", tmp_path / "figs")
    seen, shot = _browse(tmp_path / "figs" / "report.html", tmp_path)
    assert seen["sections"] == ["summary", "figures", "top", "files"]
    assert len(seen["imgs"]) == 4 and all(i["ok"] for i in seen["imgs"])
    assert len(seen["rows"]) == 20
    _check_screenshot(shot)
    # without data: the training scores, and no reconstructions
    run("-q", "plot", tmp_path / "m", "--out", tmp_path / "figs2")
    seen, _ = _browse(tmp_path / "figs2" / "report.html", tmp_path)
    assert [i["alt"] for i in seen["imgs"]] == ["loss", "scores"]
    assert all(i["ok"] for i in seen["imgs"])


def _top_k(s, k):
    s = np.asarray(s, dtype=np.float64)
    keyed = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-keyed, kind="stable")
    return order[~np.isnan(s[order])][:k]


@pytest.mark.parametrize("s", [[0.5], [np.nan, 2.0], [1.0, np.nan, 3.0, 3.0, 0.0, np.nan],
                               np.random.default_rng(0).random(57)])
def test_worst_steps_are_the_top_k_per_step_scores(s):
    from seqae.plots import worst_steps
    from seqae.report import worst_step

    for k in (1, 2, 3, 100):
        np.testing.assert_array_equal(worst_steps(np.asarray(s), k), _top_k(s, k))
    assert worst_step(s) == np.nanargmax(s) == worst_steps(np.asarray(s), 1)[0]
    assert worst_step([np.nan, np.nan]) is None and len(worst_steps(np.full(2, np.nan), 3)) == 0


def test_the_figure_marks_the_top_steps_of_the_drawn_sequences(tmp_path, monkeypatch):
    """With NaN inputs and a one-step sequence: the shaded steps are `worst_steps` of
    `n_marked` of each drawn sequence, and the PNG decodes."""
    import matplotlib.image as mpimg
    from matplotlib.axes import Axes

    from seqae import plots
    from seqae.data import Sequences

    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(n, 2)) for n in (1, 30, 230, 12)]
    arrays[2][5:9, 1] = np.nan
    arrays[2][40] = np.nan
    seqs = Sequences.from_list(arrays, missing="mask")
    recon = seqs.with_values(np.nan_to_num(seqs.values) + rng.normal(size=seqs.values.shape))
    err = (seqs.values - recon.values) ** 2
    err = np.where(np.isnan(err), 0, err).sum(1) / np.maximum((~np.isnan(err)).sum(1), 1)
    err[np.isnan(seqs.values).all(1)] = np.nan
    per_step = {i: err[seqs.offsets[i]:seqs.offsets[i + 1]] for i in (0, 1, 2)}
    scores = np.array([0.0, 1.0, 9.0, 0.5])  # drawn: 0 (best), 1 (typical), 2 (worst)
    spans = []
    monkeypatch.setattr(Axes, "axvspan", lambda ax, a, b, **kw: spans.append((ax, a, b)))
    plots.plot_reconstructions(seqs, recon, scores, tmp_path / "r.png", per_step=per_step)
    fig_axes = []
    for ax, _, _ in spans:
        if ax not in fig_axes:
            fig_axes.append(ax)
    assert len(fig_axes) == 6  # 3 sequences x 2 features
    for row, i in enumerate((0, 1, 2)):
        want = _top_k(per_step[i], plots.n_marked(len(seqs[i])))
        for ax in fig_axes[2 * row: 2 * row + 2]:
            got = [(a + b) / 2 for x, a, b in spans if x is ax]
            np.testing.assert_array_equal(got, want)
    assert [plots.n_marked(n) for n in (1, 20, 21, 230, 10_000)] == [1, 1, 2, 10, 10]
    monkeypatch.undo()
    plots.plot_reconstructions(seqs, recon, scores, tmp_path / "r.png", per_step=per_step)
    img = mpimg.imread(tmp_path / "r.png")
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05
