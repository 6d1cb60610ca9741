"""Config edges that users met, each stopped or taken before any job (dry runs on a copy of
the repository): list values given with --config, a YAML error in config/config.yaml, run
names too long for the files and names made of them or that Snakemake's wildcards refuse.
The helpers of workflow/scripts/config_checks.py are tested on the real schema too.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from workflow_runs import REPO, configure, copy_repo, snakemake

import config_checks

SCHEMA = config_checks.read_schema(str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
RUN_NAME = SCHEMA["$defs"]["run_name"]
CONFIG = Path("config") / "config.yaml"


def planned_pairs(output: str) -> set[tuple[str, str]]:
    """The (run, seed) of every job that a dry run plans."""
    return set(re.findall(r"wildcards: run=([^,\s]+), seed=(\d+)", output))


def refusal(repo: Path, *args: str) -> str:
    """The output of a dry run that must stop before any job (and write no result)."""
    result = snakemake(repo, "-n", *args, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Job stats" not in output and "Traceback" not in output
    assert not (repo / "results").exists(), "nothing may be written"
    return output


def message_line(output: str, start: str) -> str:
    """The one line of `output` that starts with `start`."""
    (line,) = [line for line in output.splitlines() if line.startswith(start)]
    return line


def name_of_length(length: int) -> str:
    """A run name of `length` characters that ends in no repeated piece (hex digits)."""
    digits = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(length // 64 + 1))
    return f"r{digits}"[:length]


# -- list (and other) values given with --config --------------------------------------------


@pytest.mark.slow
def test_a_list_of_seeds_on_the_command_line_plans_those_seeds(tmp_path: Path) -> None:
    """`--config seeds=[1,2]`: Snakemake hands the items over as '1' and '2'; the workflow
    reads them as a config file would, so both seeds are planned.
    """
    repo = copy_repo(tmp_path / "repo")
    result = snakemake(repo, "-n", "--config", "seeds=[1,2]")
    assert planned_pairs(result.stdout) == {("quick", "1"), ("quick", "2")}


@pytest.mark.slow
def test_nested_lists_and_null_on_the_command_line_work(tmp_path: Path) -> None:
    """A run's own seeds inside a mapping, and `null` for a key that takes a string or
    null, come through --config as strings too; a run named like a number stays a name.
    """
    repo = copy_repo(tmp_path / "repo")
    result = snakemake(
        repo, "-n", "--config", "runs={'7': {seeds: [3, 4]}}", "tracking=null", "baseline=null"
    )
    assert planned_pairs(result.stdout) == {("quick", "1337"), ("7", "3"), ("7", "4")}
    assert "rule track" not in result.stdout, "tracking=null is tracking off"


@pytest.mark.slow
def test_a_command_line_value_that_does_not_fit_shows_the_configfile_form(
    tmp_path: Path,
) -> None:
    repo = copy_repo(tmp_path / "repo")
    output = refusal(repo, "--config", "seeds=[1,x]")
    assert message_line(output, "seeds[1]:") == (
        "seeds[1]: 'x' is not of type 'integer'; it came through --config as a string "
        "(Snakemake passes list and mapping items on as strings): put `seeds: [1,x]` in a "
        "YAML file and give it with --configfile"
    )


# -- a YAML error in config/config.yaml -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("line", "broken", "expected"),
    [
        # The position of the problem.
        ("epochs: 2", "epochs: 2: 3", "line {n}, column 10: mapping values are not allowed here"),
        # ... and where the unfinished part began, lines before the parser notices.
        (
            "seeds: [1337]",
            "seeds: [1337",
            "expected ',' or ']', but got '?' (while parsing a flow sequence at line {n}, "
            "column 8)",
        ),
        ("epochs: 2", "\tepochs: 2", "line {n}, column 1: found character '\\t' that cannot"),
        ("epochs: 2", 'epochs: "2\x01"', "line {n}, column 11: special characters are not"),
    ],
)
def test_a_yaml_error_names_the_file_line_and_column(
    tmp_path: Path, line: str, broken: str, expected: str
) -> None:
    repo = copy_repo(tmp_path / "repo")
    lines = (repo / CONFIG).read_text(encoding="utf-8").splitlines()
    n = lines.index(line) + 1
    lines[n - 1] = broken
    (repo / CONFIG).write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = refusal(repo)
    found = message_line(output, f"config file {CONFIG} is not valid YAML: ")
    assert expected.format(n=n) in found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- quick\n", "must hold a mapping of keys (runs:, seeds:, ...), not a list"),
        ("", "is empty"),
    ],
)
def test_a_config_file_without_keys_is_named(tmp_path: Path, text: str, expected: str) -> None:
    repo = copy_repo(tmp_path / "repo")
    (repo / CONFIG).write_text(text, encoding="utf-8")
    output = refusal(repo)
    assert expected in message_line(output, f"config file {CONFIG} ")


# -- run names ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_name_over_the_limit_is_one_line_naming_the_key_and_the_limit(
    tmp_path: Path,
) -> None:
    """300 characters: once 'File name too long ... fix its owner or permissions'."""
    repo = copy_repo(tmp_path / "repo")
    name = name_of_length(300)
    configure(repo, runs={name: {}})
    output = refusal(repo)
    line = message_line(output, "runs: ")
    assert f"'{name[:40]}...' is 300 characters long, more than 200; " in line
    assert RUN_NAME["description"] in line
    assert "File name too long" not in output and "permissions" not in output


@pytest.mark.slow
def test_a_run_name_at_the_limit_is_planned(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    name = name_of_length(200)
    configure(repo, runs={name: {}})
    assert planned_pairs(snakemake(repo, "-n").stdout) == {(name, "1337")}


@pytest.mark.slow
def test_a_run_name_that_snakemake_takes_for_a_loop_is_one_line(tmp_path: Path) -> None:
    """Snakemake refuses a wildcard value ending in one piece repeated 20 times (its
    PeriodicWildcardError, once in the middle of planning the jobs).
    """
    repo = copy_repo(tmp_path / "repo")
    name = "r" + "ab" * 20
    configure(repo, runs={name: {}})
    line = message_line(refusal(repo), "runs: ")
    assert line.startswith(f"runs: the run name {name[:40]}... ends in 'ab' repeated")
    assert "; rename it (run_name in workflow/schemas/config.schema.yaml)" in line


@pytest.mark.slow
def test_a_sweep_name_over_the_limit_is_one_line(tmp_path: Path) -> None:
    """A sweep's names are its prefix and values: the workflow holds them to the limit."""
    repo = copy_repo(tmp_path / "repo")
    configure(repo, sweep={"prefix": "p" * 195, "grid": {"train.lr": [0.001]}})
    line = message_line(refusal(repo), "sweep: ")
    assert "is 204 characters long, more than 200; set a shorter sweep.prefix" in line


# -- the schema's limits and config_checks, without Snakemake -------------------------------


def test_the_run_name_limit_leaves_room_for_every_name_made_of_it() -> None:
    """Each name that holds a run name stays within its own limit: the folder results/<run>/
    and SLURM's log folder <run>_<seed> (a file name: 255 bytes), MLflow's run name
    <run>/seed<seed> (250 characters), a study's SQLite journal <study>.db-journal and its
    trials' run names <study>_<number>.
    """
    longest, study = RUN_NAME["maxLength"], SCHEMA["properties"]["search"]["properties"]["study"]
    seed = str(2**32 - 1)
    assert re.fullmatch(RUN_NAME["pattern"], "é") is None, "ASCII: a character is a byte"
    assert longest + len(f"_{seed}") <= 255
    assert longest + len(f"/seed{seed}") <= 250
    assert study["maxLength"] + len(".db-journal") <= 255
    assert study["maxLength"] + len(f"_{10**9 - 1}") <= longest
    assert f"at most {longest}" in RUN_NAME["description"]
    assert f"at most {study['maxLength']}" in study["description"]


def test_command_line_strings_are_read_as_a_config_file_would_give_them() -> None:
    """Only the values that --config gave change; where the schema takes a string alone,
    or says nothing of the type (a project override: the project reads it), it stays one.
    """
    from_file = {"seeds": [1337], "epochs": 2, "runs": {"quick": {}}, "overrides": {}}
    given: dict[str, Any] = {
        "seeds": ["1", "2"],
        "runs": {"1": {"seeds": ["3"]}, "base": ""},
        "baseline": "1",
        "data_source": "null",
        "monitor": {"memory_interval_s": "0.1", "slow_interval_s": "1"},
        "sweep": {"grid": {"train.lr": ["0.001", "gelu", "true"]}},
        "search": {"space": {"train.lr": {"low": "1.0e-4", "high": "0.1", "log": "true"}}},
        "overrides": {"train.lr": "0.001"},
    }
    config = {**from_file, "runs": {"quick": {}, "1": {"seeds": ["3"]}, "base": ""}}
    config.update({key: value for key, value in given.items() if key != "runs"})
    config_checks.retype_command_line(config, given, SCHEMA)
    assert config["seeds"] == [1, 2]
    assert config["runs"] == {"quick": {}, "1": {"seeds": [3]}, "base": None}
    assert config["baseline"] == "1"
    assert config["data_source"] is None
    assert config["monitor"] == {"memory_interval_s": 0.1, "slow_interval_s": 1}
    assert config["sweep"]["grid"]["train.lr"] == [0.001, "gelu", True]
    assert config["search"]["space"]["train.lr"] == {"low": 1e-4, "high": 0.1, "log": True}
    assert config["overrides"] == {"train.lr": "0.001"}


def test_a_refusal_of_a_file_value_has_no_command_line_advice() -> None:
    config = yaml.safe_load((REPO / CONFIG).read_text(encoding="utf-8"))
    config["seeds"] = ["x"]
    nothing_given = SimpleNamespace(config={}, config_args=None)
    assert config_checks.config_problem(config, SCHEMA, nothing_given) == (
        "seeds[0]: 'x' is not of type 'integer'"
    )


def test_a_configfile_is_checked_by_the_command_that_names_line_and_column(
    tmp_path: Path,
) -> None:
    """Snakemake reads a --configfile before the workflow runs, with no line or column in
    its message; `python workflow/scripts/config_checks.py FILE` names both.
    """
    bad = tmp_path / "mine.yaml"
    bad.write_text("seeds: [1,\nruns: {a: }\n", encoding="utf-8")
    checker = REPO / "workflow" / "scripts" / "config_checks.py"
    result = subprocess.run(
        [sys.executable, str(checker), str(bad), str(REPO / CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: config file {bad} is not valid YAML: line 3, column 1: expected ',' or ']', "
        "but got '<stream end>' (while parsing a flow sequence at line 1, column 8)"
    ]
