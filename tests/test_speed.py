import pytest

from aecourse import speed


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_throughput_benchmark_prints_both_pipelines_side_by_side(precision, monkeypatch, capsys):
    monkeypatch.setenv("AECOURSE_PRECISION", precision)
    rows = speed.throughput(repeats=1, fast=True)
    out = capsys.readouterr().out
    assert [r["model"] for r in rows] == ["tutorial CAE (no bottleneck)", "tutorial dense VAE (pytorch/examples)",
                                          "course ConvAE(32)", "course ConvVAE(16)"]
    for r in rows:
        assert r["tutorial"] > 0 and r["course"] > 0
        assert r["ratio"] == pytest.approx(r["course"] / r["tutorial"])
        assert f"{r['ratio']:.2f}x" in out
    # in bf16 the float32 loop is timed beside it, so the table shows what each part gives
    assert all(("fp32" in r) == (precision == "bf16") for r in rows)
    assert "course, float32 (img/s)" in out
    assert ("course, bfloat16 autocast (img/s)" in out) == (precision == "bf16")
    assert f"course loop precision: {'bfloat16 autocast' if precision == 'bf16' else 'float32'}" in out
    # and, for the models with transposed convolutions, fit with autocast's own weight and bias gradients for them
    assert [("autocast" in r) for r in rows] == [precision == "bf16", False, precision == "bf16", precision == "bf16"]
    assert ("course, bfloat16 autocast alone (img/s)" in out) == (precision == "bf16")
    assert ("(same: no transposed convolution)" in out) == (precision == "bf16")
    for r in rows:
        if "autocast" in r:
            assert f"{r['model']} {r['course'] / r['autocast']:.2f}x" in out
