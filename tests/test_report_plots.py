"""The report's GPU plot with series, drawn from FAKE monitor data (not a measurement):
the real runs here have no GPU, so this is the only place the drawing path runs.
"""

from __future__ import annotations

from pathlib import Path

from report_plots import plot_gpu
from report_sections import nvml_cells

MIB = 1024**2


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
