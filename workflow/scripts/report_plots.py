"""The report's plots: loss against steps, GPU memory and utilisation against time."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (clusters, containers, CI)
import matplotlib.pyplot as plt
from harness.io import write_bytes

MIB = 1024**2


def save(figure: plt.Figure, path: Path) -> None:
    """Draw the PNG in memory, then write it as every file of the workflow is written
    (harness.io: atomic; a full disk is one DiskFullError naming the file and the space).
    """
    png = io.BytesIO()
    figure.savefig(png, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)
    write_bytes(path, png.getvalue())


def plot_losses(log: list[dict[str, Any]], path: Path) -> None:
    """Training loss at every step and validation loss at every evaluation."""
    train = [r for r in log if r["kind"] == "train"]
    val = [r for r in log if r["kind"] == "val"]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.plot(
        [r["step"] for r in train],
        [r["loss"] for r in train],
        lw=0.8,
        label="training loss (per step)",
    )
    axes.plot(
        [r["step"] for r in val],
        [r["val_loss"] for r in val],
        "o-",
        color="C3",
        label="validation loss (full split, D5)",
    )
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("cross-entropy (nats/char)")
    axes.set_title("Training and validation loss")
    axes.grid(alpha=0.3)
    axes.legend()
    save(figure, path)


def plot_gpu(
    series: dict[str, list[dict[str, str]]], monitors: dict[str, dict[str, Any]], path: Path
) -> None:
    """GPU memory (device and job) and utilisation against time, one row per job."""
    stages = list(series)
    figure, rows = plt.subplots(len(stages), 1, figsize=(8, 2.8 * len(stages)), squeeze=False)
    for axes, stage in zip(rows[:, 0], stages, strict=True):
        samples = series[stage]
        monitor = monitors.get(stage, {})
        if not samples:
            reason = monitor.get("reason") or "no samples"
            axes.text(
                0.5,
                0.5,
                f"{stage}: no GPU samples\n({reason})",
                ha="center",
                va="center",
                transform=axes.transAxes,
            )
            axes.set_axis_off()
            continue
        times = [float(s["t_s"]) for s in samples]
        for column, label in (("device_used_bytes", "device used"), ("job_used_bytes", "job")):
            points = [
                (t, float(s[column]) / MIB)
                for t, s in zip(times, samples, strict=True)
                if s[column]
            ]
            axes.plot(*zip(*points, strict=True), lw=1, label=f"{label} (MiB)")
        axes.set_ylabel("memory (MiB)")
        axes.set_xlabel("seconds since job start")
        axes.set_title(f"{stage}: GPU memory and utilisation")
        util = [
            (t, float(s["gpu_util_pct"]))
            for t, s in zip(times, samples, strict=True)
            if s["gpu_util_pct"]
        ]
        if util:
            twin = axes.twinx()
            twin.plot(*zip(*util, strict=True), color="C2", lw=0.8, label="utilisation (%)")
            twin.set_ylabel("utilisation (%)")
            twin.set_ylim(0, 105)
        axes.legend(loc="upper left")
    figure.tight_layout()
    save(figure, path)
