"""scripts/bench_gpu.py (`benchmark.py --suite gpu`) runs on the CPU with tiny settings and
prints one parseable line per comparison: a smoke test of what a GPU runs later."""

import re

import pytest
from conftest import ROOT

HEADER = re.compile(
    r"^gpu: (?P<device>[^;]+); 3×8×8 synthetic images \(64 training, 16 validation\)"
)
LINE = re.compile(
    r"^  model=(?P<model>cnn|resnet)\s+compile=(?P<compile>true|false)\s+"
    r"plain\s+(?P<plain>[\d.]+) ms/epoch\s+reglab\s+(?P<reglab>[\d.]+) ms/epoch\s+"
    r"(?P<ratio>[\d.]+)× \(≤1\.05×: (ok|OVER)\)\s+"
    r"warm-up: plain (?P<warm_plain>-?[\d.]+) s, reglab (?P<warm_reglab>-?[\d.]+) s$"
)
TINY = ["--device", "cpu", "--rows", "64", "--batch", "32", "--image-size", "8"]
TINY += ["--epochs", "2", "--reps", "1"]


def bench(monkeypatch, capsys, *args: str) -> list[dict[str, str]]:
    """The suite's printed lines, parsed (asserting that every line parses)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import bench_gpu

    bench_gpu.run(bench_gpu.parser().parse_args([*TINY, *args]))
    header, *lines = capsys.readouterr().out.splitlines()
    assert HEADER.match(header), header
    assert HEADER.match(header)["device"] == "CPU (smoke test)"
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    for match in parsed:
        plain, reglab = float(match["plain"]), float(match["reglab"])
        assert plain > 0 and reglab > 0
        # one rep: the ratio is that rep's, within what printing the times to 0.1 ms and the
        # ratio to 0.01 leaves (a 4.9 ms epoch is ±1 %)
        low = (reglab - 0.05) / (plain + 0.05) - 0.005
        high = (reglab + 0.05) / (plain - 0.05) + 0.005
        assert low <= float(match["ratio"]) <= high, match.group(0)
    return [m.groupdict() for m in parsed]


def test_the_gpu_suite_runs_on_the_cpu_and_prints_a_line_per_comparison(monkeypatch, capsys):
    lines = bench(monkeypatch, capsys, "--models", "cnn", "--compile", "false")
    assert [(m["model"], m["compile"]) for m in lines] == [("cnn", "false")]


# (not `--compile true`: inductor's cold compile of both sides took 44 s of `make test` on
# the CPU, for one call of `nn.Module.compile` in the plain loop; reglab's side of it,
# `trainer.compile=true`, has its own tests in tests/test_speed_settings.py)
@pytest.mark.slow  # ResNet-20 in bf16 on the CPU
def test_the_gpu_suite_runs_resnet(monkeypatch, capsys):
    lines = bench(monkeypatch, capsys, "--models", "resnet", "--compile", "false")
    assert [(m["model"], m["compile"]) for m in lines] == [("resnet", "false")]
