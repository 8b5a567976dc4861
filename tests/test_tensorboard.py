"""What a real `tensorboard --logdir RUN` serves for a run equals what the run reports.

One short run trains in-process; a TensorBoard server (the one installed beside this
Python) reads its directory on 127.0.0.1, and the scalars come back through TensorBoard's
HTTP data API (`/data/plugin/scalars/tags`, `/data/plugin/scalars/scalars`).

The run stops early (patience 1, min_delta 10: only the first validation counts as an
improvement) and restores θ*, so the weight norms of metrics.json (of θ*) differ from the
ones logged at the last validation, at the same step: TensorBoard must show the final ones.
"""

import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import SCALAR_TAGS, read_metrics

import reglab
from reglab.records.events import SummaryWriter

RUN = (
    "data=breast_cancer",  # 6 optimizer steps per epoch, validated every 2: chunks of 2 steps
    "debug=fast",
    "trainer.val_check_interval=2",
    "callbacks.early_stopping.patience=1",
    "callbacks.early_stopping.min_delta=10",
)

TENSORBOARD = Path(sys.executable).parent / "tensorboard"
START_TIMEOUT = 60.0


def _next_event_file_uid(scratch: Path) -> int:
    """The number that this process's next TensorBoard event file (of reglab's writer) will
    end its name with."""
    logdir = scratch / str(len(list(scratch.iterdir())))
    SummaryWriter(str(logdir)).close()
    (name,) = (p.name for p in logdir.iterdir())
    return int(name.rsplit(".", 1)[1]) + 1


def _as_in_a_sweep(scratch: Path) -> None:
    """Put the run below where a sweep job can be: its event files numbered across 9 → 10.

    Event files are named `events.out.tfevents.<second>.<host>.<pid>.<n>`, n counting the
    files that the process has opened (all jobs of a `-m` sweep share it), and TensorBoard
    reads a run directory's files in name order: within one second, "…10" before "…9".
    A run whose records span several files (today: fit, test, final summary) must still be
    read back in the order it wrote them. The run starts at the beginning of a second, as a
    quick sweep job would.
    """
    uid = _next_event_file_uid(scratch)
    while len(str(uid + 2)) == len(str(uid)):
        uid = _next_event_file_uid(scratch)
    time.sleep(1.02 - time.time() % 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, Path]:
    run_dir = tmp_path_factory.mktemp("tb") / "run"
    cfg = reglab.compose(list(RUN), output_dir=run_dir)
    _as_in_a_sweep(tmp_path_factory.mktemp("scratch"))
    metrics = reglab.train(cfg)
    assert metrics["best_step"] < metrics["stopped_step"]  # θ* restored: the point of RUN
    return metrics, run_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    """(base URL, run name) of a TensorBoard serving the run directory; killed afterwards."""
    metrics, run_dir = run
    if not TENSORBOARD.exists():
        pytest.skip(f"no tensorboard executable at {TENSORBOARD}")
    port = _free_port()
    log = tmp_path_factory.mktemp("tblog") / "tensorboard.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [TENSORBOARD, "--logdir", run_dir, "--port", str(port), "--host", "127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        served = False
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.skip(f"tensorboard exited with {proc.returncode}: {log.read_text()[-500:]}")
            try:
                tags = _get(f"{base}/data/plugin/scalars/tags")
                served = True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
                continue
            # the server answers before its first load of the logdir has finished
            runs = [name for name, run_tags in tags.items() if set(metrics) <= set(run_tags)]
            if runs:
                assert len(tags) == 1, tags  # one run directory: one run
                yield base, runs[0]
                return
            time.sleep(0.25)
        if not served:
            pytest.skip(f"tensorboard did not serve in {START_TIMEOUT:.0f} s: {log.read_text()}")
        pytest.fail(f"tensorboard served no run with the metrics.json tags: {tags}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _scalars(base: str, run_name: str, tag: str) -> list[list[float]]:
    """[[wall time, step, value], …] of one scalar tag, as TensorBoard's frontend gets it."""
    query = urllib.parse.urlencode({"run": run_name, "tag": tag})
    return _get(f"{base}/data/plugin/scalars/scalars?{query}")


def test_tensorboard_serves_every_logged_scalar(server):
    base, run_name = server
    tags = _get(f"{base}/data/plugin/scalars/tags")[run_name]
    assert set(tags) >= SCALAR_TAGS, sorted(tags)
    assert "hp_metric" not in tags


def test_tensorboard_shows_the_final_metrics(run, server):
    """The last point of each metrics.json key, as TensorBoard serves it, is metrics.json."""
    metrics, run_dir = run
    assert read_metrics(run_dir) == pytest.approx(metrics, rel=1e-6)
    base, run_name = server
    shown = {key: _scalars(base, run_name, key)[-1][2] for key in metrics}
    wrong = {
        key: f"TensorBoard {shown[key]!r} != metrics.json {value!r}"
        for key, value in metrics.items()
        if not math.isclose(shown[key], value, rel_tol=1e-6, abs_tol=1e-12)
    }
    assert not wrong, wrong


def test_final_scalars_are_logged_at_the_last_optimizer_step(run, server):
    """The x axis is the optimizer step i of Algorithm 7.1 for every scalar, test/* included.

    The summary values (test/*, val/best, best_step, stopped_step, final weight norms) are
    all results of the run as it ended, so they sit at its last step, stopped_step.
    """
    metrics, _ = run
    base, run_name = server
    steps = {key: _scalars(base, run_name, key)[-1][1] for key in metrics}
    wrong = {k: step for k, step in steps.items() if step != metrics["stopped_step"]}
    assert not wrong, f"logged at other steps than stopped_step={metrics['stopped_step']}: {wrong}"


def test_training_scalars_cover_the_run(run, server):
    """train/* and val/* points run from the first chunk to the step where training stopped."""
    metrics, _ = run
    base, run_name = server
    for tag in ("train/loss", "val/loss"):
        steps = [point[1] for point in _scalars(base, run_name, tag)]
        assert steps == sorted(steps) and len(set(steps)) == len(steps), (tag, steps)
        assert steps[-1] == metrics["stopped_step"], (tag, steps)
    val_steps = [point[1] for point in _scalars(base, run_name, "val/loss")]
    assert val_steps == [2, 4]  # every trainer.val_check_interval=2 steps, patience 1
    assert metrics["best_step"] == 2


def test_one_log_call_is_one_event_holding_every_scalar(tmp_path):
    """reglab's logger writes a call's scalars as one event (Lightning's writes one per
    scalar); TensorBoard's reader sees each at its step, grouped runs still as runs."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reglab.records import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"train/loss": torch.tensor(0.25), "val/acc": 0.5}, step=3)
    logger.log_metrics({"val/acc": 0.75, "pair": {"a": 1.0}}, step=7)
    logger.close()
    events = EventAccumulator(str(tmp_path)).Reload()
    scalars = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}
    assert scalars == {"train/loss": [(3, 0.25)], "val/acc": [(3, 0.5), (7, 0.75)]}
    assert list(tmp_path.glob("pair_a/events.*"))  # add_scalars' run of its own


def test_a_weight_histogram_is_numpys_histogram_of_the_tensor():
    """The counts, range and sums TensorBoard gets for each tensor (all computed together)
    are numpy's over the same 64 bins."""
    import numpy as np
    import torch

    from reglab.records.loggers import histogram, histograms

    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(300, 7, generator=g), torch.rand(5, generator=g) * 9 - 2]
    for values, h in zip(tensors, histograms([*tensors, torch.full((3,), 2.0)], 64), strict=False):
        x = values.double().numpy().ravel()
        counts, edges = np.histogram(x, bins=64, range=(x.min(), x.max()))
        assert (h.min, h.max, h.num) == (x.min(), x.max(), x.size)
        assert list(h.bucket) == counts.tolist()
        np.testing.assert_allclose(h.bucket_limit, edges[1:], rtol=1e-12)
        assert h.sum == pytest.approx(x.sum(), rel=1e-12)
        assert h.sum_squares == pytest.approx((x**2).sum(), rel=1e-12)
    constant = histogram(torch.full((4,), 2.0), 8)  # one bin holds them all
    assert (constant.bucket[0], sum(constant.bucket), constant.min) == (4, 4, 2.0)


def test_a_runs_figures_reach_tensorboard_as_the_pixels_of_their_png_files(run):
    """TensorBoard's image of each figure is its PNG file (one render and encoding feeds
    both: records/figures.py), at the figure's own size."""
    import io

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = run
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload()
    for tag in ("learning_curve", "reliability"):
        (image,) = events.Images(tag)
        shown = Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB")
        saved = Image.open(run_dir / f"{tag}.png")
        assert (image.width, image.height) == saved.size == shown.size, tag
        assert np.array_equal(np.asarray(shown), np.asarray(saved.convert("RGB"))), tag


def test_save_png_writes_what_matplotlibs_savefig_writes(tmp_path):
    import numpy as np
    from PIL import Image

    from reglab.records import learning_curve, save_png

    history = [
        (s, tag, v / s) for s in (17, 34, 51) for tag, v in (("train/loss", 9), ("val/loss", 12))
    ]
    fig = learning_curve.plot(history, best_step=34, stopped_step=51)
    png = save_png(fig, tmp_path / "ours.png")
    fig.savefig(tmp_path / "matplotlib.png")
    ours, theirs = (np.asarray(Image.open(tmp_path / f)) for f in ("ours.png", "matplotlib.png"))
    assert ours.shape == theirs.shape == (450, 800, 4)
    assert np.array_equal(ours, theirs)
    assert png.data == (tmp_path / "ours.png").read_bytes()
    assert (png.height, png.width) == (450, 800)


def test_event_records_carry_tensorboards_own_checksums():
    """The compiled CRC-32C gives tensorboard's pure-Python masked CRC on any bytes."""
    import random

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from reglab.records.events import masked_crc32c

    rng = random.Random(0)
    for n in (0, 1, 7, 8, 12, 255, 4099):
        data = rng.randbytes(n)
        assert masked_crc32c(data) == reference(data), n


def test_an_event_is_in_the_file_when_add_event_returns_even_after_sigkill(tmp_path):
    """Every event reaches the file as it is added: a process killed with SIGKILL right
    after logging leaves a file that tensorboard's reader (which checks every record's
    CRCs) reads to the end, every scalar at its step."""
    import os
    import signal

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reglab.records import TensorBoardLogger

    pid = os.fork()
    if pid == 0:  # the child logs, then dies without closing anything
        try:
            logger = TensorBoardLogger(save_dir=tmp_path, name="", version="")
            for step in range(5):
                metrics = {"train/loss": 1.0 / (step + 1), "val/acc": step / 4}
                logger.log_metrics(metrics, step=step)
            logger.experiment.add_text("note", "x" * 5000, 5)  # longer than the others
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)  # never back into pytest
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    events = EventAccumulator(str(tmp_path)).Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(s, pytest.approx(1.0 / (s + 1))) for s in range(5)]
    assert [e.step for e in events.Scalars("val/acc")] == list(range(5))
    assert [e.step for e in events.Tensors("note/text_summary")] == [5]
