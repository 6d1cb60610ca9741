"""The `sample` stage (E5): text from the best checkpoint."""

from __future__ import annotations

import argparse
import time

from harness.io import write_json, write_text
from harness.stage import Files, Stage, check_recorded

from ..utils.config import Config

# The stage's machinery (torch) is imported when it runs, so that declaring the plan
# (plan.py: the planner, `run.py --help`, `run.py config`) imports none of it.


def run(config: Config, files: Files, args: argparse.Namespace) -> str:
    """E5 Samples from the best checkpoint: samples.txt (+ samples.json)."""
    from harness.cost import StageCost
    from harness.device import resolve_device

    from ..data.dataset import CharTokenizer, DataFiles
    from ..testing.sampler import sample_text
    from ..training.checkpoint import load_best_model

    device = resolve_device(config.device)
    DataFiles.named(files).check("vocab")
    check_recorded(files, "summary", ("best",), "train")
    with StageCost("sample", device) as cost:
        tokenizer = CharTokenizer.load(files["vocab"])
        model, state, _ = load_best_model(files["best"], device)
        started = time.perf_counter()
        text = sample_text(model, tokenizer, config.sample)
        cost.figures["chars_per_s"] = config.sample.num_chars / cost.time("sampling_s", started)
    write_text(files["samples"], text + "\n")
    meta = {
        "plan_ids": ["E5"],
        **config.to_dict()["sample"],
        "checkpoint_step": state["best_step"],
    }
    write_json(files["samples_meta"], meta)
    cost.throughput("characters", "generated", count=config.sample.num_chars)
    write_json(files["sample_cost"], cost.record())
    print(f"--- sample ---\n{text}\n--------------")
    return text


STAGE = Stage(
    name="sample",
    gpu=True,
    run=run,
    help="sample text from the best checkpoint (E5)",
    sections=("device", "sample"),
    inputs=("vocab", "manifest", "best", "summary"),
    outputs={
        "samples": "samples.txt",
        "samples_meta": "samples.json",
        "sample_cost": "cost/sample.json",
    },
)
