"""The report's GPU plot with series, drawn from FAKE monitor data (not a measurement):
the real runs here have no GPU, so this is the only place the drawing path runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from report_plots import plot_gpu
from report_sections import nvml_cells

MIB = 1024**2
SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def fake_series(n: int) -> list[dict[str, str]]:
    """A FAKE CSV series in the monitor's columns; utilisation on every fifth row only."""
    rows = []
    for i in range(n):
        slow = i % 5 == 0
        rows.append(
            {
                "t_s": f"{i * 0.05:.2f}",
                "device_used_bytes": str((500 + 10 * i) * MIB),
                "job_used_bytes": str((400 + 10 * i) * MIB),
                "gpu_util_pct": str(min(100, 2 * i)) if slow else "",
                "mem_util_pct": "",
                "power_w": "",
                "temperature_c": "",
            }
        )
    return rows


def test_gpu_plot_draws_fake_series_and_explains_missing_ones(tmp_path: Path) -> None:
    out = tmp_path / "gpu.png"
    series = {"train": fake_series(60), "evaluate": [], "sample": fake_series(3)}
    monitors = {"evaluate": {"gpu_available": False, "reason": "fake: no NVML"}}
    plot_gpu(series, monitors, out)
    assert out.read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob(".*.tmp")), "the plot is written atomically"


def test_nvml_cells_report_the_difference_to_pytorch() -> None:
    fake_monitor = {"gpu_available": True, "peak_job_memory_bytes": 1500 * MIB}
    peak, difference = nvml_cells(fake_monitor, {"torch_max_memory_reserved_bytes": 1000 * MIB})
    assert peak == "1,500.0 MiB" and difference == "500.0 MiB"
    missing, _ = nvml_cells(
        {"gpu_available": False, "reason": "NVML Shared Library Not Found"},
        {"torch_max_memory_reserved_bytes": None},
    )
    assert "NVML Shared Library Not Found" in missing


def fill(folder: Path, leave: int = 2048) -> None:
    """Fill the filesystem of `folder` up to `leave` bytes."""
    free = shutil.disk_usage(folder).free
    (folder / "filler").write_bytes(b"\0" * max(free - leave, 0))


# A full disk under a plot, in a script rule's process: one line and exit code 1, as every
# script of the workflow gives (its entry block runs under one_line_errors).
PLOT_ON_A_FULL_DISK = """\
import sys
from pathlib import Path
from harness.errors import one_line_errors
from report_plots import plot_losses
log = [{"kind": "train", "step": s, "loss": 4.0 - s / 100} for s in range(200)]
with one_line_errors():
    plot_losses(log, Path(sys.argv[1]))
"""


def test_a_plot_on_a_full_disk_is_one_line_and_leaves_nothing(small_tmpfs: Path) -> None:
    fill(small_tmpfs)
    target = small_tmpfs / "plots" / "loss.png"
    result = subprocess.run(
        [sys.executable, "-c", PLOT_ON_A_FULL_DISK, str(target)],
        cwd=SCRIPTS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: cannot write {target}: no space left on the device (")
    assert "bytes to write" in line and "bytes free on that filesystem" in line
    assert sorted(p.name for p in (small_tmpfs / "plots").iterdir()) == []
