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
        assert float(match["plain"]) > 0 and float(match["reglab"]) > 0
        assert float(match["ratio"]) == pytest.approx(
            float(match["reglab"]) / float(match["plain"]), rel=0.01, abs=0.01
        )  # one rep: the ratio is that rep's
    return [m.groupdict() for m in parsed]


def test_the_gpu_suite_runs_on_the_cpu_and_prints_a_line_per_comparison(monkeypatch, capsys):
    lines = bench(monkeypatch, capsys, "--models", "cnn", "--compile", "false")
    assert [(m["model"], m["compile"]) for m in lines] == [("cnn", "false")]


@pytest.mark.slow  # ResNet-20 in bf16 on the CPU; torch.compile of the CNN, once per side
@pytest.mark.parametrize("model, compiled", [("resnet", "false"), ("cnn", "true")])
def test_the_gpu_suite_runs_resnet_and_compiles_both_sides(monkeypatch, capsys, model, compiled):
    lines = bench(monkeypatch, capsys, "--models", model, "--compile", compiled)
    assert [(m["model"], m["compile"]) for m in lines] == [(model, compiled)]
