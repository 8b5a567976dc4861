"""data=image_folder and data=table: pixels, classes and columns as written, classes.json in
the run directory, and one-line errors naming the file or the column."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import reglab
from reglab import instantiate
from reglab.config import ConfigError, compose
from reglab.data.idx import DataFileError

QUIET = ("logger=none", "callbacks.progress_bar=null", "callbacks.weight_histograms=null")


def prepared(*overrides):
    return instantiate(compose(list(overrides), output_dir="unused").data).prepare()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 RGB 6×5 PNGs in two class folders (written in reverse order: sorting decides)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    pixels = {}
    for name in ("zebra", "ant"):
        (root / name).mkdir()
        for i in range(6):
            array = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / name / f"{i}.png")
            pixels[array.tobytes()] = name
    return root, pixels


def raw(dm, split):
    x = dm.splits[split][0].flatten(1).double() * dm.feature_std.double() + dm.feature_mean
    return x.round().to(torch.uint8).view(-1, *dm.image_shape)


def test_image_folder_reads_pixels_and_sorted_classes(photos):
    root, pixels = photos
    dm = prepared("data=image_folder", f"data.root={root}", "data.val_fraction=0.25")
    assert dm.classes == ["ant", "zebra"] and dm.image_shape == (3, 6, 5)
    for split in dm.splits:
        for image, label in zip(raw(dm, split), dm.splits[split][1], strict=True):
            hwc = image.permute(1, 2, 0).contiguous().numpy().tobytes()
            assert pixels[hwc] == dm.classes[label]


def test_image_folder_trains_streamed_from_the_files(photos, train_api):
    root, _ = photos
    args = ["data=image_folder", f"data.root={root}", "data.val_fraction=0.25"]
    quick = ["trainer.max_epochs=1", "model.hidden_sizes=[8]", "data.batch_size=4", *QUIET]
    memory, _ = train_api(*args, *quick)
    streamed, run_dir = train_api(*args, *quick, "data.in_memory=false", "data.num_workers=1")
    assert streamed == memory
    assert json.loads((run_dir / "classes.json").read_text()) == {"0": "ant", "1": "zebra"}


def test_image_folder_converts_and_resizes(photos):
    root, _ = photos
    dm = prepared("data=image_folder", f"data.root={root}", "data.channels=1", "data.image_size=4")
    assert dm.image_shape == (1, 4, 4) and dm.example_shape == (1, 4, 4)


def test_an_unreadable_image_is_named_or_skipped(photos, tmp_path):
    root, _ = photos
    bad = tmp_path / "set"
    for name in ("ant", "zebra"):
        (bad / name).mkdir(parents=True)
        for image in (root / name).iterdir():
            (bad / name / image.name).write_bytes(image.read_bytes())
    (bad / "ant" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataFileError, match=r"broken\.png cannot be read.*skip_bad_files"):
        prepared("data=image_folder", f"data.root={bad}")
    dm = prepared("data=image_folder", f"data.root={bad}", "data.skip_bad_files=true")
    assert sum(len(y) for _, y in dm.splits.values()) == 12


CSV = """age,colour,size,diagnosis
{rows}"""


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(1)
    colours = ["red", "blue", "", "green"]
    rows = [
        (round(float(rng.normal(50, 10)), 3), colours[i % 4], i % 3, "sick" if i % 2 else "healthy")
        for i in range(40)
    ]
    path = tmp_path_factory.mktemp("table") / "patients.csv"
    lines = [f"{a:.3f},{c},{s},{d}" for a, c, s, d in rows]
    path.write_text(CSV.format(rows="\n".join(lines)) + "\n")
    return path, rows


def test_string_targets_map_to_sorted_classes_and_categories_to_one_hot(table):
    path, rows = table
    dm = prepared("data=table", f"data.path={path}", "data.target=diagnosis")
    assert dm.classes == ["healthy", "sick"]
    x = dm.source().x
    # by hand: age, then colour=blue|green|red (the empty cell all zeros), then size
    by_hand = np.array(
        [[a, c == "blue", c == "green", c == "red", s] for a, c, s, _ in rows], dtype=np.float32
    )
    np.testing.assert_array_equal(x, by_hand)
    y = dm.source().y
    assert y.tolist() == [int(d == "sick") for *_, d in rows]


def test_classes_json_is_saved_in_the_run_directory(table, train_api):
    path, _ = table
    overrides = ["data=table", f"data.path={path}", "data.target=diagnosis", *QUIET]
    metrics, run_dir = train_api(*overrides, "trainer.max_epochs=1", "model.hidden_sizes=[8]")
    assert json.loads((run_dir / "classes.json").read_text()) == {"0": "healthy", "1": "sick"}
    assert 0 <= metrics["test/acc"] <= 1


def test_regression_npz_and_parquet_tables(tmp_path, table):
    rng = np.random.default_rng(2)
    columns = {"a": rng.normal(size=30), "b": rng.normal(size=30), "t": rng.normal(size=30)}
    np.savez(tmp_path / "t.npz", **columns)
    dm = prepared("data=table", f"data.path={tmp_path / 't.npz'}", "data.target=t",
                  "data.task=regression", "data.features=[b]")  # fmt: skip
    np.testing.assert_array_equal(dm.source().x[:, 0], columns["b"].astype(np.float32))
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    parquet = prepared("data=table", f"data.path={tmp_path / 't.parquet'}", "data.target=t",
                       "data.task=regression")  # fmt: skip
    np.testing.assert_array_equal(parquet.source().y, columns["t"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.target=outcome"], "data.target=outcome: no such column in .*patients.csv"),
        (
            [
                "data.target=age",
                "data.task=classification",
                "data.features=[colour]",
                "data.max_categories=2",
            ],
            "column colour is not numeric and has 3 distinct",
        ),
        (["data.target=colour"], "column colour has 10 missing values"),
        (["data.target=diagnosis", "data.task=regression"], "column diagnosis is not numeric"),
    ],
)
def test_bad_tables_are_one_line_errors_naming_the_column(table, overrides, message):
    path, _ = table
    with pytest.raises(DataFileError, match=message):
        prepared("data=table", f"data.path={path}", *overrides)


def test_a_data_file_error_is_a_one_line_config_error_before_training(table, tmp_path):
    """What the command line prints as `reglab: error: <message>` with exit status 2 (the
    handling of every ConfigError, tested through the command line in test_bad_input.py):
    here in-process, without the seconds a fresh interpreter spends importing torch."""
    path, _ = table
    cfg = compose(["data=table", f"data.path={path}", "data.target=outcome"], tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        reglab.train(cfg)
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.target=outcome: no such column")
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training
