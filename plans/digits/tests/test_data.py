"""D1-D5: the source, the parser, the split, the normalisation and the batches."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from harness.inputs import StaleInputError

from digits.data import source
from digits.data.batches import TrainBatches
from digits.data.dataset import PreparedDigits
from digits.data.normalise import Normalisation
from digits.data.parse import DigitsFormatError, parse_rows
from digits.data.source import (
    MIRROR_ENV,
    SHA256,
    DataSourceError,
    bundled_file,
    locate_source,
    recorded_source,
    source_record,
)
from digits.utils.config import Config, DataConfig

GOOD_ROW = ",".join(["0"] * 32 + ["16"] * 32 + ["7"])


# -- D1 the parser and the source ---------------------------------------------------------


def test_parser_reads_images_row_by_row_and_labels() -> None:
    images, labels = parse_rows(GOOD_ROW + "\n" + GOOD_ROW + "\n\n", "x.csv")
    assert images.shape == (2, 8, 8) and images.dtype == np.uint8
    assert (images[0, :4] == 0).all() and (images[0, 4:] == 16).all()
    assert labels.tolist() == [7, 7]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (",".join(["0"] * 64), "64 fields, expected 65"),
        (",".join(["0"] * 66), "66 fields, expected 65"),
        (",".join(["0"] * 10 + ["17"] + ["0"] * 53 + ["1"]), "pixel 11 is 17, outside 0–16"),
        (",".join(["0"] * 10 + ["-1"] + ["0"] * 53 + ["1"]), "pixel 11 is -1"),
        (",".join(["0"] * 64 + ["10"]), "label 10 is outside 0–9"),
        (",".join(["0"] * 63 + ["a", "1"]), "not an integer"),
    ],
)
def test_a_bad_row_is_an_error_that_names_its_line(row: str, problem: str) -> None:
    with pytest.raises(DigitsFormatError, match=f"x.csv, line 3: .*{problem}"):
        parse_rows("\n".join([GOOD_ROW, GOOD_ROW, row, GOOD_ROW]), "x.csv")


def test_the_real_file_parses_to_1797_digits(digits_file: Path) -> None:
    images, labels = parse_rows(digits_file.read_text(), str(digits_file))
    assert images.shape == (1797, 8, 8)
    assert images.max() == 16 and sorted(set(labels.tolist())) == list(range(10))


def test_a_local_file_is_verified(tmp_path: Path, digits_file: Path) -> None:
    source = locate_source(DataConfig(local_file=str(digits_file)))
    assert (source.origin, source.sha256) == ("local_file", SHA256)
    wrong = tmp_path / "digits.csv"
    wrong.write_bytes(digits_file.read_bytes()[:-2] + b"\n")
    with pytest.raises(DataSourceError, match="not the plan's digits file"):
        locate_source(DataConfig(local_file=str(wrong)))
    with pytest.raises(DataSourceError, match="not a file"):
        locate_source(DataConfig(local_file=str(tmp_path / "absent.csv")))


def test_the_mirror_variable_overrides_the_mirror_key(
    tmp_path: Path, digits_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "digits.csv").write_bytes(digits_file.read_bytes())
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    source = locate_source(DataConfig(mirror_dir="/nowhere"))
    assert (source.origin, source.location) == ("mirror", str(tmp_path / "digits/digits.csv"))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "empty"))
    with pytest.raises(DataSourceError, match="does not hold the digits"):
        locate_source(DataConfig())


def test_the_plans_default_mirror_is_the_shared_folder(digits_file: Path) -> None:
    source = locate_source(DataConfig())
    assert source.origin == "mirror" and Path(source.location).samefile(digits_file)


def test_scikit_learns_copy_stands_in_for_an_absent_default_mirror(tmp_path: Path) -> None:
    bundled = bundled_file()
    if bundled is None:
        pytest.skip("scikit-learn is not installed")
    source = locate_source(DataConfig(mirror_dir=None))
    assert source.origin == "scikit-learn" and source.content == gzip.decompress(
        bundled.read_bytes()
    )


def test_without_any_copy_the_error_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(source, "bundled_file", lambda: None)
    monkeypatch.setattr(source, "REPO_DIR", Path("/nonexistent/repo"))
    with pytest.raises(DataSourceError, match=r"nonexistent/shared/data/digits/digits.csv; <sc"):
        locate_source(DataConfig())  # the plan's default mirror may be absent
    with pytest.raises(DataSourceError, match=r"looked in: <scikit-learn>"):
        locate_source(DataConfig(mirror_dir=None))


def test_the_planned_source_is_read_again_and_verified(tmp_path: Path, digits_file: Path) -> None:
    copy = tmp_path / "digits.csv"
    copy.write_bytes(digits_file.read_bytes())
    record = source_record(Config(data=DataConfig(local_file=str(copy))))
    assert record == {"origin": "local_file", "location": str(copy), "sha256": SHA256}
    assert recorded_source(record).content == digits_file.read_bytes()
    copy.write_bytes(digits_file.read_bytes().replace(b"0,0,5", b"0,0,6", 1))
    with pytest.raises(DataSourceError, match="not the plan's digits file"):
        recorded_source(record)
    copy.unlink()
    with pytest.raises(DataSourceError, match="is gone"):
        recorded_source(record)


# -- D2 split, D3 normalisation -----------------------------------------------------------


def test_the_split_is_808_90_899_by_position(prepared: PreparedDigits, digits_file: Path) -> None:
    assert [len(prepared.train), len(prepared.val), len(prepared.test)] == [808, 90, 899]
    images, labels = parse_rows(digits_file.read_text(), "x")
    assert (prepared.train.counts == images[:808]).all()
    assert (prepared.val.counts == images[808:898]).all()
    assert (prepared.test.labels.numpy() == labels[898:]).all()
    splits = prepared.manifest["splits"]
    assert [splits[s]["size"] for s in ("train", "val", "test")] == [808, 90, 899]
    assert sum(splits["test"]["class_counts"]) == 899
    assert splits["train"]["class_counts"] == np.bincount(labels[:808]).tolist()
    assert prepared.manifest["source_sha256"] == SHA256


def test_normalisation_statistics_come_from_the_training_split_only(
    prepared: PreparedDigits, digits_file: Path
) -> None:
    images, _ = parse_rows(digits_file.read_text(), "x")
    train = images[:808] / 16
    stats = prepared.manifest["normalisation"]
    assert stats == pytest.approx({"mean": train.mean(), "std": train.std()}, rel=1e-12)
    everything = Normalisation.fit(images)
    assert everything.mean != pytest.approx(stats["mean"], rel=1e-6)
    # the stored images are (x/16 − mean) / std
    np.testing.assert_allclose(
        prepared.test.images[:, 0].numpy(),
        (images[898:] / 16 - stats["mean"]) / stats["std"],
        atol=1e-6,
    )
    assert Normalisation(**stats).blank == pytest.approx(-stats["mean"] / stats["std"])


def test_an_edited_prepared_file_is_refused(prepared_files: dict, tmp_path: Path) -> None:
    rows = tmp_path / "digits.npy"
    rows.write_bytes(prepared_files["rows"].read_bytes()[:-1] + b"\x01")
    with pytest.raises(StaleInputError, match="is not the file the `prepare` stage wrote"):
        PreparedDigits.load(rows, prepared_files["manifest"])


# -- D4 training batches ------------------------------------------------------------------


def batches(prepared: PreparedDigits, augment: bool = True, seed: int = 1337) -> TrainBatches:
    train = prepared.train
    blank = prepared.normalisation.blank
    return TrainBatches(train.images, train.labels, 32, seed, augment, blank)


def test_an_epoch_is_26_batches_of_32_the_last_of_8(prepared: PreparedDigits) -> None:
    sizes = [len(labels) for _, labels in batches(prepared).epoch(0)]
    assert sizes == [32] * 25 + [8] and batches(prepared).steps_per_epoch == 26


def test_batches_are_a_pure_function_of_seed_and_epoch(prepared: PreparedDigits) -> None:
    def epoch(seed: int, number: int) -> list[torch.Tensor]:
        return [
            torch.cat((x.flatten(1), y[:, None]), 1)
            for x, y in batches(prepared, seed=seed).epoch(number)
        ]

    first = epoch(1337, 3)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(1337, 3), strict=True))
    assert not torch.equal(first[0], epoch(1337, 4)[0])
    assert not torch.equal(first[0], epoch(1338, 3)[0])


def test_without_augmentation_an_epoch_is_each_image_once(prepared: PreparedDigits) -> None:
    order, shifts = batches(prepared, augment=False).plan(5)
    assert sorted(order.tolist()) == list(range(808)) and not shifts.any()
    images = torch.cat([x for x, _ in batches(prepared, augment=False).epoch(5)])
    assert torch.equal(images, prepared.train.images[torch.from_numpy(order)])
    # the order does not depend on the switch
    assert (batches(prepared).plan(5)[0] == order).all()


def test_a_shift_moves_the_image_and_fills_the_border_with_blank(
    prepared: PreparedDigits,
) -> None:
    feed = batches(prepared)
    order, shifts = feed.plan(0)
    assert set(map(tuple, shifts.tolist())) == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    shifted = torch.cat([x for x, _ in feed.epoch(0)])[:, 0]  # (808, 8, 8)
    blank = prepared.normalisation.blank
    for row in range(50):
        dy, dx = shifts[row].tolist()
        original = prepared.train.images[order[row], 0]
        expected = torch.full((10, 10), blank)
        expected[1 + dy : 9 + dy, 1 + dx : 9 + dx] = original
        assert torch.equal(shifted[row], expected[1:9, 1:9])
