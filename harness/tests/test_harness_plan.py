"""harness/plan.py: a plan folder loads as a package of its own, named after the folder; a
declaration that contradicts itself or the contract is a PlanError with one clear line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness.plan import PlanError, load_plan, package_name

if TYPE_CHECKING:
    from conftest import MakePlan, RunPlan


def test_a_plan_folder_loads_as_a_package_named_after_it(make_plan: MakePlan) -> None:
    folder = make_plan("toy_loaded")
    plan = load_plan(folder)
    assert plan.folder == folder.resolve()
    assert plan.name == "toy_loaded" and plan.title == "a synthetic plan"
    package = sys.modules["toy_loaded"]
    assert [Path(p) for p in package.__path__] == [folder.resolve()]
    assert Path(sys.modules["toy_loaded.plan"].__file__) == folder.resolve() / "plan.py"
    # Its modules import each other relatively, under the package's name.
    assert plan.stage("fit").run.__module__ == "toy_loaded.stages.fit"
    assert plan.config.__module__ == "toy_loaded.utils.config"
    assert [stage.name for stage in plan.stages] == ["gather", "fit", "score"]
    assert plan.training.name == "fit"
    # Loading it again is the same package, not a second copy.
    assert load_plan(folder).config is plan.config


def test_the_package_name_is_the_folder_name_made_an_identifier(
    make_plan: MakePlan, tmp_path: Path
) -> None:
    assert package_name(tmp_path / "my-plan.v2") == "my_plan_v2"
    plan = load_plan(make_plan("toy-dashed"))
    assert plan.stage("gather").run.__module__ == "toy_dashed.stages.gather"


SHADOWED = '''\
"""A module of the same name in every plan."""

WIDTH = {width}


def describe():
    from .layers import LAYERS

    return f"width {{WIDTH}}, {{LAYERS}} layers"
'''


def test_two_plans_in_one_process_never_shadow_each_other(
    make_plan: MakePlan, tmp_path: Path
) -> None:
    """Both have a `model` package (with a `layers` module) and `utils.config`: each plan
    reads its own.
    """
    plans = {}
    for name, width, layers in (("toy_alpha", 16, 2), ("toy_beta", 32, 5)):
        folder = make_plan(
            name,
            preamble="from .model import describe",
            title="describe()",
            files={
                "model/__init__.py": SHADOWED.format(width=width),
                "model/layers.py": f"LAYERS = {layers}\n",
            },
        )
        plans[name] = load_plan(folder)
    assert plans["toy_alpha"].title == "width 16, 2 layers"
    assert plans["toy_beta"].title == "width 32, 5 layers"
    alpha, beta = sys.modules["toy_alpha.model"], sys.modules["toy_beta.model"]
    assert alpha is not beta and (alpha.WIDTH, beta.WIDTH) == (16, 32)
    assert sys.modules["toy_alpha.model.layers"].LAYERS == 2
    assert plans["toy_alpha"].config is not plans["toy_beta"].config
    for name, plan in plans.items():
        assert Path(sys.modules[f"{name}.model"].__file__).parent == plan.folder / "model"
    # Every module loaded from the two folders is in its plan's package, none under its
    # bare name (`model`, `utils.config`, `plan`).
    ours = [
        name
        for name, module in list(sys.modules.items())
        if Path(getattr(module, "__file__", None) or "/").is_relative_to(tmp_path)
    ]
    assert {"toy_alpha.model", "toy_beta.model", "toy_alpha.plan", "toy_beta.plan"} <= set(ours)
    assert all(name.split(".")[0] in plans for name in ours), ours


def test_a_second_folder_of_a_loaded_name_is_refused(make_plan: MakePlan, tmp_path: Path) -> None:
    first = make_plan("toy_twin", parent=tmp_path / "one")
    second = make_plan("toy_twin", parent=tmp_path / "two")
    load_plan(first)
    with pytest.raises(PlanError) as refused:
        load_plan(second)
    message = str(refused.value)
    assert "a package named toy_twin is already loaded" in message
    assert str(first.resolve()) in message and "rename the plan folder" in message


# -- folders that are not plans -----------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"__init__.py": None}, "not a plan folder (no __init__.py)"),
        ({"plan.py": None}, "no plan.py (a plan folder declares PLAN in plan.py)"),
        ({"plan.py": "PLANS = None\n"}, "plan.py: no `PLAN = Plan(...)` declaration"),
        ({"plan.py": "PLAN = {'name': 'toy'}\n"}, "plan.py: no `PLAN = Plan(...)` declaration"),
    ],
    ids=["no-init", "no-plan-py", "no-PLAN", "PLAN-not-a-Plan"],
)
def test_a_folder_that_is_not_a_plan_is_a_plan_error(
    make_plan: MakePlan, files: dict[str, str | None], says: str
) -> None:
    folder = make_plan("toy_broken", files=files)
    with pytest.raises(PlanError) as refused:
        load_plan(folder)
    message = str(refused.value)
    assert says in message and str(folder.resolve()) in message
    assert "\n" not in message
    assert refused.value.exit_code == 2


def test_a_missing_module_inside_the_plan_is_not_mistaken_for_a_missing_plan_py(
    make_plan: MakePlan,
) -> None:
    folder = make_plan("toy_importing", preamble="from .absent import THING")
    with pytest.raises(ModuleNotFoundError) as missing:
        load_plan(folder)
    assert missing.value.name == "toy_importing.absent"


# -- declarations that contradict themselves or the contract -----------------------------

BROKEN = {
    "unknown-section": (
        {"stages": "(replace(gather.STAGE, sections=('data', 'model')), fit.STAGE, score.STAGE)"},
        "stage gather reads unknown sections ['model']",
    ),
    "no-training-stage": (
        {"stages": "(gather.STAGE, replace(fit.STAGE, trains=False), score.STAGE)"},
        "exactly one stage trains (trains=True), not []",
    ),
    "two-training-stages": (
        {"stages": "(gather.STAGE, fit.STAGE, replace(score.STAGE, trains=True))"},
        "exactly one stage trains (trains=True), not ['fit', 'score']",
    ),
    "no-cost-output": (
        {
            "stages": "(gather.STAGE, fit.STAGE, "
            "replace(score.STAGE, outputs=outputs_without(score.STAGE, 'score_cost')))"
        },
        "stages ['score'] have no `<stage>_cost` output",
    ),
    "no-manifest": (
        {
            "stages": "(replace(gather.STAGE, outputs=outputs_without(gather.STAGE, 'manifest')),"
            " fit.STAGE, score.STAGE)"
        },
        "the first stage must write ['manifest'] (harness/contract.py",
    ),
    "no-train-log": (
        {
            "stages": "(gather.STAGE, replace(fit.STAGE, outputs=outputs_without(fit.STAGE, "
            "'train_log')), score.STAGE)"
        },
        "the training stage must write ['train_log'] (harness/contract.py",
    ),
    "no-checks": (
        {
            "stages": "(gather.STAGE, fit.STAGE, "
            "replace(score.STAGE, outputs=outputs_without(score.STAGE, 'checks')))"
        },
        "a stage must write ['checks'] (harness/contract.py",
    ),
    "bad-direction": (
        {"direction": "upwards"},
        "objective direction 'upwards' is neither of minimize, maximize",
    ),
}


@pytest.mark.parametrize(("changes", "says"), BROKEN.values(), ids=BROKEN.keys())
def test_a_contradictory_declaration_is_a_plan_error(
    make_plan: MakePlan, changes: dict[str, str], says: str
) -> None:
    folder = make_plan("toy_contradicts", **changes)
    with pytest.raises(PlanError) as refused:
        load_plan(folder)
    message = str(refused.value)
    assert message.startswith("toy_contradicts: ") and says in message
    assert "\n" not in message


def test_run_py_of_a_broken_plan_exits_2_with_one_line(
    make_plan: MakePlan, run_plan: RunPlan
) -> None:
    folder = make_plan("toy_upwards", direction="upwards")
    done = run_plan(folder, "config")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: toy_upwards: objective direction 'upwards' is neither of minimize, maximize"
    ]
    assert done.stdout == ""


# -- what the workflow reads of the plan --------------------------------------------------


def test_the_record_is_json_of_names_roles_and_objective(make_plan: MakePlan) -> None:
    plan = load_plan(make_plan("toy_recorded"))
    record = plan.record()
    assert json.loads(json.dumps(record)) == record
    assert record["name"] == "toy_recorded" and record["folder"] == plan.folder.as_posix()
    assert record["sections"] == ["seed", "device", "data", "train"]
    assert record["objective"] == {"figure": "final_loss", "direction": "minimize"}
    assert record["epochs_key"] == "train.epochs" and record["devices_key"] is None
    assert list(record["stages"]) == ["gather", "fit", "score"]
    assert record["stages"]["fit"] == {
        "sections": ["seed", "device", "train"],
        "inputs": ["numbers", "manifest"],
        "outputs": {
            "summary": "summary.json",
            "train_log": "train_log.jsonl",
            "fit_cost": "cost/fit.json",
        },
        "gpu": True,
        "trains": True,
    }
    assert [name for name, stage in record["stages"].items() if stage["trains"]] == ["fit"]
    assert record["report"] == {"texts": ["notes"], "pictures": []}
