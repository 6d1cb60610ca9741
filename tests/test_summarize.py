"""The comparison across runs and seeds, from FAKE JSON inputs (made-up numbers)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import summarize
from make_report import read_json

MIB = 1024**2
NO_NVML = "NVML Shared Library Not Found"
HEADERS = [
    "Run",
    "n",
    "Seeds",
    "validation bits per character (bits/char)",  # the figure's label and unit
    "Final train loss (nats)",
    "Train wall time (s)",
    "Steps/s",
    "Peak GPU memory (MiB)",
]


def write(path: Path, record: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return str(path)


def bits_figure(value: float) -> dict[str, Any]:
    """metrics.json's figure for validation bits per character, with a FAKE value."""
    return {
        "name": "bits_per_char",
        "label": "validation bits per character",
        "value": value,
        "unit": "bits/char",
        "format": ".4f",
        "summary": True,
        "baselines": {},
    }


def fake_pair(
    root: Path, run: str, seed: int, bits: float, loss: float, time_s: float, steps: int, peak: Any
) -> dict[str, str]:
    """FAKE outputs of one (run, seed); `peak` None: a monitor that found no GPU."""
    folder = root / run / f"seed{seed}"
    monitor = (
        {"gpu_available": False, "reason": NO_NVML, "peak_job_memory_bytes": None}
        if peak is None
        else {"gpu_available": True, "reason": None, "peak_job_memory_bytes": peak}
    )
    return {
        "metrics": write(folder / "metrics.json", {"figures": [bits_figure(bits)]}),
        "train": write(
            folder / "train_summary.json",
            {"final_train_loss": loss, "train_time_s": time_s, "steps": steps},
        ),
        "monitor": write(folder / "monitor" / "train.json", monitor),
    }


def summarize_pairs(tmp_path: Path, pairs: list[tuple[Any, ...]]) -> list[list[str]]:
    """Run the script's main on FAKE pairs; the table's body rows, split into cells."""
    files = [fake_pair(tmp_path / "results", *pair) for pair in pairs]
    inputs = SimpleNamespace(**{key: [f[key] for f in files] for key in files[0]})
    outputs = SimpleNamespace(
        table=str(tmp_path / "results" / "out" / "summary.md"),
        plot=str(tmp_path / "results" / "out" / "summary.png"),
    )
    params = SimpleNamespace(runs=[p[0] for p in pairs], seeds=[p[1] for p in pairs])
    summarize.main(inputs, outputs, params)
    assert Path(outputs.plot).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(Path(outputs.table).parent.glob(".*.tmp")), "outputs are written atomically"
    lines = Path(outputs.table).read_text(encoding="utf-8").splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| Run")))
    assert [c.strip() for c in lines[header].strip("|").split("|")] == HEADERS
    body = [line for line in lines[header + 2 :] if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in body]


def pm(values: list[float], digits: int) -> str:
    """The expected cell, computed here independently of the script."""
    return f"{statistics.mean(values):,.{digits}f} ± {statistics.stdev(values):,.{digits}f}"


def test_two_runs_two_seeds_give_mean_and_sample_sd(tmp_path: Path) -> None:
    pairs = [
        ("base", 1, 2.10, 1.40, 100.0, 500, None),
        ("lr-low", 1, 2.30, 1.60, 90.0, 500, 2000 * MIB),
        ("base", 2, 2.20, 1.50, 120.0, 500, None),
        ("lr-low", 2, 2.35, 1.70, 110.0, 500, 2100 * MIB),
    ]
    rows = summarize_pairs(tmp_path, pairs)
    assert [r[:3] for r in rows] == [["base", "2", "1, 2"], ["lr-low", "2", "1, 2"]]
    base, low = rows
    assert base[3:7] == [
        pm([2.10, 2.20], 4),
        pm([1.40, 1.50], 4),
        pm([100.0, 120.0], 1),
        pm([500 / 100.0, 500 / 120.0], 2),
    ]
    assert base[7] == "n/a (no GPU)"
    assert low[3] == pm([2.30, 2.35], 4)
    assert low[7] == pm([2000.0, 2100.0], 1) == "2,050.0 ± 70.7"


def test_one_seed_shows_the_mean_alone(tmp_path: Path) -> None:
    rows = summarize_pairs(tmp_path, [("base", 7, 2.125, 1.5, 80.0, 400, 1536 * MIB)])
    assert rows == [["base", "1", "7", "2.1250", "1.5000", "80.0", "5.00", "1,536.0"]]


def test_gpu_figure_missing_for_some_seeds_is_counted(tmp_path: Path) -> None:
    pairs = [("base", 1, 2.0, 1.0, 10.0, 10, 1024 * MIB), ("base", 2, 2.0, 1.0, 10.0, 10, None)]
    assert summarize_pairs(tmp_path, pairs)[0][7] == "1,024.0 (1 of 2 seeds)"


def test_footnote_names_the_sd_and_why_there_is_no_gpu(tmp_path: Path) -> None:
    summarize_pairs(tmp_path, [("base", 1, 2.0, 1.0, 10.0, 10, None)])
    text = (tmp_path / "results" / "out" / "summary.md").read_text(encoding="utf-8")
    assert "sample standard deviation" in text and "lower bound" in text
    assert f"No GPU figure: {NO_NVML}." in text


def test_lists_of_different_lengths_are_an_error(tmp_path: Path) -> None:
    files = fake_pair(tmp_path, "base", 1, 2.0, 1.0, 10.0, 10, None)
    inputs = SimpleNamespace(**{key: [path] for key, path in files.items()})
    with pytest.raises(ValueError):
        summarize.load_results(inputs, SimpleNamespace(runs=["base", "base"], seeds=[1, 2]))


@pytest.mark.parametrize("damage", ["not json", "folder"])
def test_a_damaged_record_stops_the_scripts_with_one_line(tmp_path: Path, damage: str) -> None:
    """metrics.json edited into garbage, or replaced by a folder: one line, no traceback."""
    path = tmp_path / "metrics.json"
    if damage == "folder":
        path.mkdir()
    else:
        path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        read_json(path)
    message = str(stopped.value.code)
    assert message.startswith(f"error: {path} cannot be read")
    assert "run snakemake again" in message and "\n" not in message
