"""A metric added in the project alone (one more figure in testing/evaluator.py) shows in
the report and the summary with no edit to either script, without training: the figures
come from a real `evaluate()` of an untrained tiny model.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from harness.contract import Figure
from project.data.dataset import CharTokenizer, PreparedData
from project.model.gpt import CharGPT
from project.testing import evaluator
from project.utils.config import EvalConfig, ModelConfig

import summarize
from report_sections import baselines, validation_metrics

TEXT = "O Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy name"
# The new metric: a FAKE value, marked for the summary.
NEW = Figure("top10_accuracy", "top-10 accuracy", 0.56789, "", ".3f", summary=True)


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """metrics.json as the evaluate stage writes it, with the new figure declared."""
    declared = evaluator.figures
    monkeypatch.setattr(evaluator, "figures", lambda *args: [*declared(*args), NEW])
    tokenizer = CharTokenizer.from_text(TEXT)
    ids = torch.tensor(tokenizer.encode(TEXT))
    data = PreparedData(ids[:60], ids[60:], tokenizer, manifest={})
    torch.manual_seed(0)
    sizes = {"n_layer": 1, "n_head": 1, "d_model": 8, "block_size": 8, "dropout": 0.0}
    config = ModelConfig(**sizes, rope_base=10000.0, norm_eps=1e-6, init_std=0.02)
    model = CharGPT(config, tokenizer.vocab_size)
    return json.loads(json.dumps(evaluator.evaluate(model, data, EvalConfig(None, 4), "fp32")))


def test_a_new_figure_reaches_metrics_json_the_report_and_the_summary(
    metrics: dict[str, Any], tmp_path: Path
) -> None:
    assert metrics["top10_accuracy"] == NEW.value
    assert metrics["figures"][-1] == asdict(NEW)
    assert "top-10 accuracy 0.568" in validation_metrics(metrics)
    row = next(line for line in baselines(metrics).splitlines() if "top-10" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")] == [
        "top-10 accuracy",
        "0.568",
        "not computed",
        "not computed",
    ]
    train = {"final_train_loss": 1.5, "train_time_s": 10.0, "steps": 20}
    monitor = {"gpu_available": False, "reason": "FAKE: no GPU"}
    results = [summarize.seed_result("base", seed, metrics, train, monitor) for seed in (1, 2)]
    header, _, row = summarize.summary_markdown(results).splitlines()[2:5]
    cells = dict(zip(header.strip("|").split("|"), row.strip("|").split("|"), strict=True))
    bits = f"{metrics['bits_per_char']:.4f} ± 0.0000"
    assert {name.strip(): cell.strip() for name, cell in cells.items()} == {
        "Run": "base",
        "n": "2",
        "Seeds": "1, 2",
        "validation bits per character (bits/char)": bits,
        "top-10 accuracy": "0.568 ± 0.000",
        "Final train loss (nats)": "1.5000 ± 0.0000",
        "Train wall time (s)": "10.0 ± 0.0",
        "Steps/s": "2.00 ± 0.00",
        "Peak GPU memory (MiB)": "n/a (no GPU)",
    }
    summarize.plot_summary(results, tmp_path / "summary.png")  # a panel for each figure
    assert (tmp_path / "summary.png").read_bytes().startswith(b"\x89PNG")
