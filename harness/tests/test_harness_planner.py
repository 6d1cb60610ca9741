"""harness/planner.py, as the workflow runs it (`python -m harness.planner PLAN_DIR <
spec.json`): the records of what each stage reads, each written only when its content
changes, and the plan's declaration printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from harness.plan import load_plan

if TYPE_CHECKING:
    from conftest import MakePlan, Planner

OLD_NS = 1_000_000_000 * 10**9  # 2001: an mtime no write of this test leaves


def run(
    directory: Path,
    config: Path | None = None,
    data_source: str | None = None,
    epochs: int | None = None,
    overrides: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """One run of the spec."""
    return {
        "dir": str(directory),
        "config": None if config is None else str(config),
        "data_source": data_source,
        "epochs": epochs,
        "overrides": list(overrides),
    }


def spec(results: Path, *runs: dict[str, Any]) -> dict[str, Any]:
    return {"results": str(results), "runs": list(runs)}


def read(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def three_runs(results: Path, lr: float = 0.25) -> dict[str, Any]:
    """a: the plan; b: another lr and epochs (the same data); c: another data source."""
    return spec(
        results,
        run(results / "a" / "config"),
        run(results / "b" / "config", epochs=2, overrides=({"train.lr": lr},)),
        run(results / "c" / "config", data_source="numbers.txt"),
    )


def test_the_planner_writes_every_record_and_prints_the_plan(
    make_plan: MakePlan, planner: Planner, tmp_path: Path
) -> None:
    folder, results = make_plan("toy_planned"), tmp_path / "results"
    done = planner(folder, three_runs(results))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert set(printed) == {"plan", "stages", "code", "components", "runs", "data_folders"}
    assert printed["plan"] == load_plan(folder).record()
    assert printed["stages"] == printed["plan"]["stages"]

    # code/<stage>.json: the fingerprint over the modules the stage runs.
    code = {name: read(path) for name, path in printed["code"].items()}
    assert printed["code"] == {
        name: (results / "code" / f"{name}.json").as_posix() for name in ("gather", "fit", "score")
    }
    for name, record in code.items():
        assert len(record["fingerprint"]) == 64
        modules = set(record["modules"])
        assert {"toy_planned/run.py", "toy_planned/plan.py", f"toy_planned/stages/{name}.py"} <= (
            modules
        )
        assert {"harness/cli.py", "harness/stage.py", "harness/io.py"} <= modules
        others = {f"toy_planned/stages/{o}.py" for o in ("gather", "fit", "score") if o != name}
        assert not modules & others, f"{name} reaches another stage"
    assert "toy_planned/utils/decay.py" in code["fit"]["modules"]
    assert "toy_planned/utils/decay.py" not in code["gather"]["modules"]
    assert len({record["fingerprint"] for record in code.values()}) == 3

    components = read(printed["components"])["modules"]
    assert printed["components"] == (results / "code" / "components.json").as_posix()
    rows = {row["path"]: row for row in components}
    assert [row["path"] for row in components[:2]] == ["run.py", "plan.py"]
    assert rows["stages/gather.py"] == {
        "path": "stages/gather.py",
        "doc": "D1: gather the numbers (the shared data) and the manifest.",
        "plan_ids": ["D1"],
    }
    assert rows["utils/decay.py"]["plan_ids"] == ["T1"]

    # Each run's stage configs (the first stage's goes to its data folder).
    runs = printed["runs"]
    assert set(runs) == {str(results / name / "config") for name in "abc"}
    a, b, c = (runs[str(results / name / "config")] for name in "abc")
    assert a["configs"] == {
        name: (results / "a" / "config" / f"{name}.json").as_posix()
        for name in ("fit", "score", "resolved")
    }
    assert read(a["configs"]["fit"]) == {
        "seed": 7,
        "device": "cpu",
        "train": {"epochs": 3, "lr": 0.5},
    }
    assert read(b["configs"]["fit"])["train"] == {"epochs": 2, "lr": 0.25}
    assert read(a["configs"]["score"]) == read(b["configs"]["score"]) == {"device": "cpu"}
    resolved = read(b["configs"]["resolved"])
    assert resolved["source"] == "cpu-preset", "CUDA hidden: the CPU preset stands in"
    assert "config train.lr = 0.25 (plan: 0.5)" in resolved["deviations"]
    assert not any("train.epochs" in note for note in resolved["deviations"])

    # One data folder for each distinct data configuration.
    assert a["data_folder"] == b["data_folder"] != c["data_folder"]
    assert Path(a["data_folder"]).parent == results / "data"
    assert set(printed["data_folders"]) == {a["data_folder"], c["data_folder"]}
    shared, other = (
        printed["data_folders"][a["data_folder"]],
        printed["data_folders"][c["data_folder"]],
    )
    assert shared["config"] == f"{a['data_folder']}/config/gather.json"
    assert read(shared["config"]) == {"data": {"size": 2, "source": None}}
    assert read(shared["source"]) == {"origin": "generated", "location": None, "size": 2}
    assert read(other["config"]) == {"data": {"size": 2, "source": "numbers.txt"}}
    assert read(other["source"]) == {"origin": "given", "location": "numbers.txt", "size": 2}


def mtimes(results: Path) -> dict[str, int]:
    return {
        path.relative_to(results).as_posix(): path.stat().st_mtime_ns
        for path in results.rglob("*")
        if path.is_file()
    }


def age(results: Path) -> None:
    """Every record's mtime set far back, so that any rewrite shows, however fast."""
    for path in results.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(OLD_NS, OLD_NS))


def rewritten(results: Path) -> set[str]:
    return {name for name, mtime in mtimes(results).items() if mtime != OLD_NS}


def test_a_record_is_rewritten_only_when_its_content_changes(
    make_plan: MakePlan, planner: Planner, tmp_path: Path
) -> None:
    folder, results = make_plan("toy_replanned"), tmp_path / "results"
    assert planner(folder, three_runs(results)).returncode == 0
    written = set(mtimes(results))
    age(results)

    # The same spec again: nothing is rewritten.
    again = planner(folder, three_runs(results))
    assert again.returncode == 0, again.stderr
    assert rewritten(results) == set() and set(mtimes(results)) == written

    # Another lr in run b: the configs of the stages that read it, and the whole.
    assert planner(folder, three_runs(results, lr=0.125)).returncode == 0
    assert rewritten(results) == {"b/config/fit.json", "b/config/resolved.json"}
    assert read(results / "b" / "config" / "fit.json")["train"]["lr"] == 0.125
    age(results)

    # A comment and a docstring's second paragraph: no stage's code changed.
    fit = folder / "stages" / "fit.py"
    text = fit.read_text(encoding="utf-8")
    edited = text.replace(
        '"""T1: fit, one epoch at a time."""', '"""T1: fit, one epoch at a time.\n\nMore words."""'
    )
    fit.write_text(
        edited.replace("    return summary\n", "    return summary  # done\n"), encoding="utf-8"
    )
    assert planner(folder, three_runs(results, lr=0.125)).returncode == 0
    assert rewritten(results) == set()

    # A constant in a module that only `fit` reaches: its code record, no other.
    decay = folder / "utils" / "decay.py"
    decay.write_text(decay.read_text(encoding="utf-8").replace("= 0.0", "= 0.01"), encoding="utf-8")
    assert planner(folder, three_runs(results, lr=0.125)).returncode == 0
    assert rewritten(results) == {"code/fit.json"}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"overrides": [{"train.lr": 2.0}]}, "config key 'train.lr' must be in (0, 1]"),
        (
            {"overrides": [{"train.rate": 0.1}]},
            "unknown config key 'train.rate' (known keys here: train.epochs, train.lr)",
        ),
        ({"epochs": "many"}, "config key 'train.epochs' must be of type int, got 'many' (str)"),
        ({"config": "missing.yaml"}, "config file not found: missing.yaml"),
    ],
    ids=["out-of-range", "unknown-key", "wrong-type", "no-config-file"],
)
def test_a_bad_run_value_exits_2_naming_the_run_and_writes_nothing(
    make_plan: MakePlan, planner: Planner, tmp_path: Path, bad: dict[str, Any], says: str
) -> None:
    results = tmp_path / "results"
    good, wrong = run(results / "good" / "config"), run(results / "wrong" / "config")
    done = planner(make_plan(), spec(results, good, {**wrong, **bad}))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {results / 'wrong' / 'config'}: {says}"]
    assert done.stdout == ""
    assert not results.exists(), "nothing is written, not even the good run's records"
