"""The quality suite's --resume reads back what an interrupted run printed."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fit_line(name, settings, seed, acc, fit_s, epochs, rel, recipe=None):
    """A seqae line as quality.py prints it (old logs lack the recipe)."""
    tail = f", recipe {recipe}" if recipe else ""
    return (f"| {name} | seqae {settings} + RBF SVM (seed {seed}) | {acc} | {fit_s} | "
            f"{epochs} epochs (best 35, final lr 5.0e-05), C=1, test reconstruction "
            f"MSE / variance {rel}{tail} |")


LOG = "\n".join([
    "# torch 2.13.0+cpu, 2 threads; seqae default SequenceAutoencoder(max_time=300)",
    "| data set | method | test accuracy | train time s | notes |",
    "| gunpoint (50+150 seqs, 1 ch, lengths 150-150, 2 classes) | | | | |",
    "epoch 3/10000  train 0.5  lr 0.001  3s elapsed, 4m57s left",
    fit_line("gunpoint", "default", 0, "0.9867", 300, 42, "0.023"),
    fit_line("gunpoint", "default", 1, "0.9800", 301, 40, "0.017", "conv/max/1/global"),
    fit_line("gunpoint", "default", 1, "0.5000", 301, 40, "0.017"),
    fit_line("gunpoint", "default", 7, "0.1000", 301, 40, "0.017"),
    fit_line("gunpoint", "{'pooling': 'mean'}", 2, "0.2000", 301, 40, "0.017"),
    "| gunpoint | summary statistics + RBF SVM | 0.7867 | 0 | C=10 |",
    "| gunpoint | 1-NN DTW (standardised, window none) | 0.9067 | 1 | |",
    fit_line("italy", "default", 0, "0.9514", 300, 256, "0.034"),
]) + "\n"


def test_resume_keeps_the_runs_of_these_settings_and_seeds_once(quality, tmp_path):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    rows, lines = quality.read_log(log, "seqae default + RBF SVM", [0, 1, 2])
    assert rows["gunpoint"] == {
        "seeds": [0, 1], "seqae": [0.9867, 0.98], "fit_s": [300.0, 301.0],
        "rel": [0.023, 0.017], "epochs": [42, 40], "recipe": "conv/max/1/global",
        "summary": 0.7867, "dtw": 0.9067,
    }
    assert rows["italy"]["seeds"] == [0] and "summary" not in rows["italy"]
    # the second seed-1 line, seed 7 (not asked for) and other settings are not kept
    assert len(lines) == 5 and not any("0.5000" in x or "0.1000" in x or "0.2000" in x
                                       for x in lines)
    other, _ = quality.read_log(log, "seqae {'pooling': 'mean'} + RBF SVM", [2])
    assert other["gunpoint"]["seqae"] == [0.2]


def test_gpu_benchmark_runs_a_tiny_version_of_itself_on_the_cpu(tmp_path):
    """benchmarks/gpu.py --tiny (issue 27's GPU run, shrunk to seconds on a CPU) writes
    every recipe's methods, each with finite positive ratios to the limit."""
    import json
    import math
    import os
    import subprocess
    import sys

    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--tiny",
                           "--json", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["tiny"] and result["environment"]["device"] == "cpu"
    assert result["environment"]["seqae"].startswith(str(ROOT))  # this checkout's seqae
    recipes = result["recipes"]
    assert list(recipes) == ["LSTM 256", "conv 64", "GRU 256"]
    ratios = []
    for name, r in recipes.items():
        assert list(r["train"]) == ["limit", "fit e2e", "fit e2e bf16", "fit e2e read 1",
                                    "naive"] + (["keras"] if name == "LSTM 256" else [])
        assert r["train"]["fit e2e read 1"]["x_fp32"] > 0
        assert list(r["encode"]) == ["seqae encode", "naive encode"]
        measured = [*r["train"].values(), *r["encode"].values()]
        # this version trains in bf16: (d) is measured, (c) in float32 explicitly
        assert result["precision_parameter"]
        assert r["train"]["fit e2e"]["precision"] == "32"
        assert r["train"]["fit e2e bf16"]["precision"] == "bf16"
        assert r["train"]["fit e2e bf16"]["x_fp32"] > 0
        assert result["goals"][name]["bf16_x_fp32"] == r["train"]["fit e2e bf16"]["x_fp32"]
        for m in measured:
            assert m["steps_per_s"] > 0 and m["peak_mb"] > 0, (name, m)
            assert {"x_limit", "mem_x_limit"} <= set(m), (name, m)
            ratios += [v for k, v in m.items() if k.startswith("x_") or k == "mem_x_limit"]
        assert r["train"]["limit"]["x_limit"] == 1.0
        assert r["encode"]["seqae encode"]["x_padded"] > 0
        assert result["goals"][name]["fit_e2e_x_limit"] == r["train"]["fit e2e"]["x_limit"]
    # the Keras recipe beside the LSTM (keras is a test dependency)
    assert recipes["LSTM 256"]["train"]["fit e2e"]["x_keras"] > 0
    assert result["goals"]["LSTM 256"]["fit_e2e_x_keras"] > 0
    assert len(ratios) >= 3 * 11
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in ratios), ratios
    assert "| recipe | method | valid steps/s |" in done.stdout


def test_gpu_benchmark_sizes_an_epoch_as_fit_does():
    """The full (non --tiny) run sizes `fit` from the epoch's valid steps: whole passes,
    at least MIN_EPOCH_STEPS batches (the first GPU run stopped on this line's import)."""
    import numpy as np

    spec = importlib.util.spec_from_file_location("gpu", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    lengths = np.array([3, 5, 7, 9, 11])
    # 5 sequences in batches of 2: 3 batches a pass; 32 batches take 11 passes
    assert gpu.epoch_steps(lengths, 2) == 35 * 11
    assert gpu.epoch_steps(np.full(400, 10), 8) == 4000  # 50 batches: one pass


def test_export_benchmark_runs_a_tiny_version_of_itself(tmp_path, capsys):
    """benchmarks/export.py --tiny (issue 26's latency run, shrunk to seconds) times every
    way of running the exported encoder, each giving ae.encode's embeddings."""
    pytest.importorskip("onnxruntime", reason="the export benchmark needs onnxruntime "
                        "(pip install 'seqae[export]')")
    import json
    import math

    spec = importlib.util.spec_from_file_location("export_bench",
                                                  ROOT / "benchmarks" / "export.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "export.json"
    bench.main(["--tiny", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["tiny"] and result["environment"]["seqae"].startswith(str(ROOT))
    ways = ["onnxruntime", "torchscript", "python graph", "ae.encode"]
    for case in ("one sequence", "batch of 64"):
        assert list(result["latency"][case]) == ways
        for way, r in result["latency"][case].items():
            assert 0 < r["p50_ms"] <= r["p99_ms"] and math.isfinite(r["p99_ms"]), (case, way)
            if way != "ae.encode":
                assert r["max_abs_diff"] < 1e-4, (case, way)
    assert 0 < result["load_and_first_run_s"]["onnxruntime"] < 60
    assert "| one sequence | onnxruntime |" in capsys.readouterr().out


def test_imputation_baselines_against_hand_numbers():
    spec = importlib.util.spec_from_file_location("impute", ROOT / "benchmarks" / "impute.py")
    impute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(impute)
    nan = float("nan")
    a = np.array([[nan, 1.0], [2.0, nan], [nan, nan], [6.0, 4.0], [nan, nan]])
    mean = np.array([10.0, 20.0])
    np.testing.assert_array_equal(impute.fill_mean(a, mean)[:, 0], [10, 2, 10, 6, 10])
    np.testing.assert_array_equal(impute.fill_locf(a, mean),
                                  [[2, 1], [2, 1], [2, 1], [6, 4], [6, 4]])
    np.testing.assert_array_equal(impute.fill_linear(a, mean),
                                  [[2, 1], [2, 2], [4, 3], [6, 4], [6, 4]])
    assert impute.fill_linear(np.full((2, 1), nan), mean[:1]).tolist() == [[10], [10]]
    rng = np.random.default_rng(0)
    gappy = impute.with_gaps([np.ones((20, 3))], 0.5, rng, "block")[0]
    assert np.isnan(gappy).sum() == 10 and np.isnan(gappy).any(0).sum() == 1
