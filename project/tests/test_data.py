"""D2 split, D3 tokenizer, D4 training windows, D5 evaluation windows."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import torch
from harness.io import atomic_write, write_bytes

from project.data import download, preprocess
from project.data.dataset import CharTokenizer, DataFiles, PreparedData, UnknownCharacterError
from project.data.download import CACHE_ENV, MIRROR_ENV, DataSourceError, locate_source
from project.data.loader import TrainBatches, eval_batches, eval_windows
from project.data.preprocess import prepare, split_point
from project.tests import dispatch as run
from project.tests.dispatch import load
from project.tests.run_files import output
from project.utils.config import DataConfig

N_CHARS, TRAIN_CHARS, VAL_CHARS = 1_115_394, 1_003_854, 111_540

# -- D3 -------------------------------------------------------------------------------------


def test_tokenizer_round_trip_with_non_ascii_characters(tmp_path: Path) -> None:
    text = "Straße — café 😀 naïve\nTo be, or not to be: 😀é"
    tokenizer = CharTokenizer.from_text(text)
    assert tokenizer.chars == sorted(set(text), key=ord)
    assert tokenizer.vocab_size == len(set(text))
    ids = tokenizer.encode(text)
    assert len(ids) == len(text)
    assert sorted(set(ids)) == list(range(tokenizer.vocab_size))
    assert tokenizer.decode(ids) == text
    # Any text made of vocabulary characters round-trips, not only the fitting text.
    other = "😀ß—\n" + "ecaf"
    assert tokenizer.decode(tokenizer.encode(other)) == other
    # ids follow code point order
    assert tokenizer.encode("\n")[0] == 0
    assert tokenizer.encode("😀")[0] == tokenizer.vocab_size - 1
    # The saved vocabulary reloads to the same mapping.
    path = tmp_path / "vocab.json"
    path.write_text(tokenizer.to_json(), encoding="utf-8")
    reloaded = CharTokenizer.load(path)
    assert reloaded.chars == tokenizer.chars
    assert reloaded.encode(text) == ids


def test_tokenizer_rejects_an_unsorted_vocabulary() -> None:
    with pytest.raises(ValueError, match="sorted"):
        CharTokenizer(["b", "a"])
    with pytest.raises(ValueError, match="sorted"):
        CharTokenizer(["a", "a"])


def test_unknown_character_is_named_with_its_position() -> None:
    tokenizer = CharTokenizer.from_text("abc ")
    with pytest.raises(UnknownCharacterError) as caught:
        tokenizer.encode("ab cé a")
    message = str(caught.value)
    assert "'é'" in message and "position 4" in message
    assert "U+00E9" in message and "vocabulary of 4 characters" in message
    with pytest.raises(UnknownCharacterError, match="position 0"):
        tokenizer.encode("😀")


def test_every_unknown_character_is_named_in_order_of_first_appearance() -> None:
    tokenizer = CharTokenizer.from_text("abc ")
    text = "ab é😀c\tx é😀x"
    unknown = [("é", "U+00E9", 3), ("😀", "U+1F600", 4), ("\t", "U+0009", 6), ("x", "U+0078", 7)]
    with pytest.raises(UnknownCharacterError) as caught:
        tokenizer.encode(text)
    message = str(caught.value)
    assert "4 distinct characters" in message
    assert "is not in the vocabulary of 4 characters" in message
    starts = []
    for char, code_point, position in unknown:
        named = f"{char!r} ({code_point}) first at position {position}"
        assert named in message
        starts.append(message.index(named))
    assert starts == sorted(starts)
    assert tokenizer.encode("cab ") == [3, 1, 2, 0]  # valid text still encodes


def test_real_text_vocabulary_and_split_sizes(
    shakespeare_file: Path, prepared_run_dir: Path
) -> None:
    text = shakespeare_file.read_text(encoding="utf-8")
    assert len(text) == N_CHARS
    assert split_point(len(text), 0.9) == TRAIN_CHARS
    assert CharTokenizer.from_text(text).vocab_size == 65

    data = PreparedData.load(DataFiles.named({n: output(prepared_run_dir, n) for n in run.DATA}))
    assert (len(data.train), len(data.val)) == (TRAIN_CHARS, VAL_CHARS)
    assert data.train.dtype == torch.int64
    assert (output(prepared_run_dir, "train_ids")).stat().st_size == 2 * TRAIN_CHARS  # uint16
    assert data.tokenizer.vocab_size == 65
    # Contiguous, unshuffled: the splits decode back to the two halves of the file.
    assert data.tokenizer.decode(data.train.tolist()) == text[:TRAIN_CHARS]
    assert data.tokenizer.decode(data.val.tolist()) == text[TRAIN_CHARS:]
    manifest = json.loads((output(prepared_run_dir, "manifest")).read_text())
    assert manifest["train_chars"] == TRAIN_CHARS
    assert manifest["val_chars"] == VAL_CHARS
    assert manifest["vocab_size"] == 65
    assert manifest["n_chars"] == N_CHARS


# -- D1 sources, and what `prepare` leaves when a write fails --------------------------------

TEXT = "To be, or not to be: that is the question.\n" * 20


def plan_data(**changes: Any) -> DataConfig:
    """The plan's data section with `changes`."""
    config, _ = load()
    assert config.data is not None
    return dataclasses.replace(config.data, **changes)


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No mirror variable, the cache in tmp_path/cache, the plan's mirror (../shared/data
    beside the repository) absent, and no download: reaching one fails the test.
    """
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(download, "REPO_DIR", tmp_path / "repo")

    def no_download(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the source must not fall through to the download")

    monkeypatch.setattr(download, "_download", no_download)
    return tmp_path


@pytest.mark.parametrize("chosen", ["env", "mirror_dir", "local_file"])
def test_an_explicit_source_without_the_text_fails_at_once(
    sources: Path, monkeypatch: pytest.MonkeyPatch, chosen: str
) -> None:
    empty = sources / "empty"
    empty.mkdir()
    expected = empty / "tinyshakespeare" / "input.txt"
    if chosen == "env":
        monkeypatch.setenv(MIRROR_ENV, str(empty))
        config = plan_data()
    elif chosen == "mirror_dir":
        config = plan_data(mirror_dir=str(empty))
    else:
        expected = empty / "input.txt"
        config = plan_data(local_file=str(expected))
    with pytest.raises(DataSourceError) as caught:
        locate_source(config)
    assert str(expected) in str(caught.value)
    assert not (sources / "cache").exists()


@pytest.mark.parametrize("env_value", [None, ""])
def test_the_plans_mirror_is_a_default_that_may_be_absent(
    sources: Path, monkeypatch: pytest.MonkeyPatch, env_value: str | None
) -> None:
    if env_value is not None:
        monkeypatch.setenv(MIRROR_ENV, env_value)  # set but empty: as if unset
    cached = sources / "cache" / "tinyshakespeare" / "input.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text(TEXT, encoding="utf-8")
    source = locate_source(plan_data(sha256=None))
    assert (source.origin, source.path) == ("cache", cached)


def test_an_unwritable_cache_from_the_environment_is_named(
    sources: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = sources / "a-file"
    blocker.write_text("", encoding="utf-8")  # a folder under a file fails for root too
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(DataSourceError) as caught:
        locate_source(plan_data())
    message = str(caught.value)
    assert str(blocker / "cache" / "tinyshakespeare") in message
    assert "CHARGPT_DATA_CACHE" in message and "data.cache_dir" in message


def test_disk_full_while_writing_a_split_leaves_no_manifest_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text_file = tmp_path / "own.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    config = plan_data(local_file=str(text_file), sha256=None)
    folder = tmp_path / "data"
    names = ("train.bin", "val.bin", "vocab.json", "manifest.json")
    files = DataFiles(*(folder / name for name in names))
    prepare(config, files, locate_source(config))  # a complete folder from an earlier run
    earlier_val = files.val.read_bytes()

    def disk_full_on_val(path: Path, data: bytes) -> None:
        if path != files.val:
            write_bytes(path, data)
            return

        def half_then_enospc(handle: IO[bytes]) -> None:
            handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        atomic_write(path, half_then_enospc)

    monkeypatch.setattr(preprocess, "write_bytes", disk_full_on_val)
    with pytest.raises(OSError) as caught:
        prepare(config, files, locate_source(config))
    assert caught.value.errno == errno.ENOSPC
    assert str(files.val) in str(caught.value)  # the error names the file
    # The manifest went first, so the folder reads as unprepared; the half-written split
    # (a temporary file) is gone and the earlier, complete one was not replaced by it.
    assert not files.manifest.exists()
    assert sorted(path.name for path in folder.iterdir()) == sorted(names[:3])
    assert files.val.read_bytes() == earlier_val


# -- D4 -------------------------------------------------------------------------------------

D4_CASES = [(1000, 7, 5), (517, 10, 3), (64, 4, 2), (300, 16, 1)]


def window_positions(inputs: torch.Tensor, targets: torch.Tensor) -> list[list[int]]:
    """With ids = arange(N), a window's ids are its positions."""
    return [
        [*row_in.tolist(), int(row_t[-1])] for row_in, row_t in zip(inputs, targets, strict=True)
    ]


@pytest.mark.parametrize(("n", "block", "batch"), D4_CASES)
def test_train_windows_cover_the_split_once_per_epoch(n: int, block: int, batch: int) -> None:
    ids = torch.arange(n)
    batches = TrainBatches(ids, block, batch, seed=1)
    offsets = set()
    for epoch in range(8):
        used: list[int] = []
        count = 0
        for inputs, targets in batches.epoch(epoch):
            assert inputs.shape == targets.shape == (batch, block)
            assert torch.equal(targets, inputs + 1)  # targets are inputs shifted by one
            for window in window_positions(inputs, targets):
                assert window == list(range(window[0], window[0] + block + 1))
                used.extend(window)
            count += 1
        assert count == batches.steps_per_epoch
        assert len(used) == len(set(used)), "a position was used twice in one epoch"
        assert max(used) < n
        assert len(set(used)) / n >= 1 - (block + batch * (block + 1)) / n
        starts = batches.window_starts(epoch).numpy()
        assert len(set(starts % (block + 1))) == 1
        offsets.add(int(starts[0] % (block + 1)))
    assert all(0 <= o < block for o in offsets)
    assert len(offsets) > 1  # a different alignment in different epochs


def test_windows_per_epoch_is_what_fits_at_the_largest_offset() -> None:
    for n in range(40, 120):
        block = 6
        fits = 0
        while (block - 1) + (fits + 1) * (block + 1) <= n:
            fits += 1
        assert TrainBatches(torch.arange(n), block, 1, seed=0).windows_per_epoch == fits


def test_train_batches_are_a_pure_function_of_seed_and_epoch() -> None:
    ids = torch.arange(2000)
    first = TrainBatches(ids, 8, 4, seed=5)
    second = TrainBatches(ids.clone(), 8, 4, seed=5)
    epoch3 = [x for x, _ in first.epoch(3)]
    for (a, _), b in zip(second.epoch(3), epoch3, strict=True):
        assert torch.equal(a, b)
    epoch4 = [x for x, _ in first.epoch(4)]
    assert any(not torch.equal(a, b) for a, b in zip(epoch3, epoch4, strict=True))
    other_seed = [x for x, _ in TrainBatches(ids, 8, 4, seed=6).epoch(3)]
    assert any(not torch.equal(a, b) for a, b in zip(epoch3, other_seed, strict=True))
    for skip in (1, 17, len(epoch3) - 1, len(epoch3)):
        tail = [x for x, _ in second.epoch(3, skip=skip)]
        assert len(tail) == len(epoch3) - skip
        assert all(torch.equal(a, b) for a, b in zip(tail, epoch3[skip:], strict=True))
    # Iterating another epoch in between does not change an epoch's batches.
    assert all(
        torch.equal(a, b) for a, b in zip(epoch3, [x for x, _ in first.epoch(3)], strict=True)
    )


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_take_disjoint_shares_that_make_up_the_global_batch(world_size: int) -> None:
    ids, block, batch = torch.arange(3000), 8, 8
    whole = list(TrainBatches(ids, block, batch, seed=2).epoch(1))
    ranks = [TrainBatches(ids, block, batch, 2, r, world_size) for r in range(world_size)]
    for rank in ranks:
        assert rank.batch_shape == (batch // world_size, block)
    for step, shares in enumerate(zip(*(rank.epoch(1) for rank in ranks), strict=True)):
        for inputs, targets in shares:
            assert inputs.shape == targets.shape == ranks[0].batch_shape
        assert torch.equal(torch.cat([inputs for inputs, _ in shares]), whole[step][0])


def test_train_batches_reject_a_split_too_short_for_one_batch() -> None:
    with pytest.raises(ValueError, match="too short"):
        TrainBatches(torch.arange(20), 8, 4, seed=0)


# -- D5 -------------------------------------------------------------------------------------

D5_CASES = [
    (2, 4, 2),  # the shortest split
    (5, 8, 4),  # N shorter than T + 1
    (9, 8, 4),  # N = T + 1: one full window
    (10, 8, 4),
    (50, 8, 3),  # S does not divide N
    (37, 10, 7),
    (64, 16, 5),
    (100, 16, 16),  # S = T
    (100, 16, 1),
]


@pytest.mark.parametrize(("n", "block", "stride"), D5_CASES)
def test_eval_windows_score_every_position_once_with_enough_context(
    n: int, block: int, stride: int
) -> None:
    ids = torch.arange(n)
    windows = eval_windows(n, block, stride)
    length = min(block, n - 1)
    scored: list[int] = []
    for batch_size in (1, 3):
        scored = []
        first = True
        for inputs, targets, mask in eval_batches(ids, windows, block, batch_size):
            assert inputs.shape == targets.shape == mask.shape
            assert inputs.shape[1] == length
            assert torch.equal(targets, inputs + 1)
            for row_in, row_t, row_m in zip(inputs, targets, mask, strict=True):
                start = int(row_in[0])
                assert torch.equal(row_in, torch.arange(start, start + length))
                for position, is_scored in zip(row_t.tolist(), row_m.tolist(), strict=True):
                    if not is_scored:
                        continue
                    scored.append(position)
                    context = position - start  # ids start .. position-1
                    assert 1 <= context <= block
                    if not first:
                        assert context >= block - stride
                first = False
        assert sorted(scored) == list(range(1, n)), "every position after the first, once"
    assert sum(w.scored for w in windows) == n - 1
    assert windows[0].start == 0


def test_eval_windows_need_two_ids() -> None:
    with pytest.raises(ValueError):
        eval_windows(1, 8, 4)


def test_prepared_ids_fit_uint16(prepared_run_dir: Path) -> None:
    raw = np.fromfile(output(prepared_run_dir, "val_ids"), dtype=np.uint16)
    assert raw.shape == (VAL_CHARS,)
    assert int(raw.max()) < 65
