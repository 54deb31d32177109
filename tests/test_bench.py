"""bench.run on a zoo model, qir alone: the table has qir's rows against torch fp32
eager, and `--qir-cpus haswell` adds the AVX2 kernel family's build (every x86-64 CPU
this project meets runs AVX2 code)."""

from __future__ import annotations


def test_bench_run_prints_rows_for_each_kernel_family(capsys):
    from bench.run import main

    assert main(["--models", "mlp", "--systems", "qir", "--repeat", "2", "--rounds", "1",
                 "--warmup", "1", "--numpy-repeat", "1", "--qir-cpus", "haswell",
                 "--markdown"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    assert rows[:3] == ["qir int8 (llvm)", "qir int8 (llvm, haswell)", "qir float (llvm)"]
    assert "torch fp32 eager" in rows
    haswell = next(line for line in out.splitlines() if "(llvm, haswell)" in line)
    assert float(haswell.split("|")[2]) > 0 and "built for -mcpu=haswell" in haswell
