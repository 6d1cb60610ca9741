"""The README and the pages of docs/ (and config/README.md) say only what is true: every
fenced block has an info string and parses as what it says it is, every shell command in
them works as far as it can be tried here, and every relative link and #anchor resolves.

Shell commands, by program (COMMANDS below says how each is checked): `snakemake` parses
with Snakemake's own options and runs as a dry run (`-n`) in a copy of the repository,
configured with the YAML config blocks above it on the same page; `python SCRIPT` exists
and answers `--help`; `pytest` paths exist and its markers are declared; `pip install -r`
files exist; `docker compose` services exist in the Compose files; a `docker build`'s
Dockerfile, build arguments and secrets exist. What cannot run here (a Docker engine,
Apptainer, a package manager) is checked as far as it can be, with the reason in
NOT_RUN.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
import yaml
from workflow_runs import REPO, copy_repo, workflow_env

README = REPO / "README.md"
README_LIMIT = 10_240  # bytes: the README is a front door, the rest lives in docs/
DOCS = REPO / "docs"


def pages() -> list[Path]:
    found = [README, *sorted(DOCS.glob("*.md"))]
    if (REPO / "config" / "README.md").is_file():
        found.append(REPO / "config" / "README.md")
    return found


def page_id(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


# --- blocks -------------------------------------------------------------------------------

SHELL = {"bash", "sh", "shell"}
CONSOLE = {"console"}  # commands are the lines after "$ "; the rest is their output
YAML = {"yaml", "yml"}
PYTHON = {"python", "py"}
JSON = {"json"}
# Shown, not run: a listing, a Snakefile snippet (not Python), a graph, a file's text.
TEXT = {"text", "snakemake", "dot", "dockerfile", "ini", "toml", "diff", "csv", "tsv", "markdown"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str

    @property
    def where(self) -> str:
        return f"{page_id(self.page)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a page, dedented (a block inside a list item is indented)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        info = opening["info"].strip().split()[0].lower() if opening["info"].strip() else ""
        found.append(Block(page, i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return found


def prose(page: Path) -> str:
    """A page without its fenced blocks (for headings and links)."""
    kept, fence = [], None
    for line in page.read_text(encoding="utf-8").splitlines():
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening["fence"]
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


ALL_BLOCKS = [block for page in pages() for block in blocks(page)]


def blocks_of(kinds: set[str]) -> list[Block]:
    return [block for block in ALL_BLOCKS if block.info in kinds]


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_block_says_what_it_is(page: Path) -> None:
    known = SHELL | CONSOLE | YAML | PYTHON | JSON | TEXT
    unnamed = [
        f"{b.where}: {b.info or 'no info string'}" for b in blocks(page) if b.info not in known
    ]
    assert not unnamed, f"give each block an info string of {sorted(known)}: {unnamed}"


@pytest.mark.parametrize("block", blocks_of(YAML), ids=lambda b: b.where)
def test_yaml_blocks_parse(block: Block) -> None:
    yaml.safe_load(block.text)


def test_json_blocks_parse() -> None:
    for block in blocks_of(JSON):
        json.loads(block.text)


@pytest.mark.parametrize("block", blocks_of(PYTHON), ids=lambda b: b.where)
def test_python_blocks_parse(block: Block) -> None:
    ast.parse(block.text)


# --- config blocks ------------------------------------------------------------------------

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text("utf-8"))
BASE_CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text(encoding="utf-8"))


def config_fragment(block: Block) -> dict | None:
    """A YAML block that is a piece of config/config.yaml (its keys are the schema's)."""
    if block.info not in YAML:
        return None
    data = yaml.safe_load(block.text)
    if isinstance(data, dict) and data and set(data) <= set(SCHEMA["properties"]):
        return data
    return None


def page_config(page: Path, line: int) -> dict:
    """config/config.yaml with every config block above `line` of the page laid over it."""
    config = dict(BASE_CONFIG)
    for block in blocks(page):
        if block.line < line and (fragment := config_fragment(block)) is not None:
            config.update(fragment)
    return config


CONFIG_BLOCKS = [b for b in ALL_BLOCKS if config_fragment(b) is not None]


@pytest.mark.parametrize("block", CONFIG_BLOCKS, ids=lambda b: b.where)
def test_config_blocks_fit_the_schema(block: Block) -> None:
    """Each piece of config/config.yaml shown, laid over the real file, passes the schema
    (the dry runs below also pass the project's own checks).
    """
    config = page_config(block.page, block.line + 1)
    jsonschema.validators.validator_for(SCHEMA)(SCHEMA).validate(config)


# --- shell commands -----------------------------------------------------------------------

OPERATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "2>", "&>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class Command:
    block: Block
    argv: list[str]
    cwd: str  # relative to the repository root, where the block starts
    env: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The command as shown: its variables, then its words."""
        return shlex.join([*(f"{k}={v}" for k, v in self.env.items()), *self.argv])

    @property
    def words(self) -> str:
        return shlex.join(self.argv)

    def __str__(self) -> str:
        return f"{self.block.where}: {self.text}"


def shell_lines(block: Block) -> list[str]:
    text = block.text.replace("\\\n", " ")
    if block.info in CONSOLE:
        return [line[2:] for line in text.splitlines() if line.startswith("$ ")]
    return text.splitlines()


def commands(block: Block) -> list[Command]:
    """A shell block's commands, split at &&, ||, ;, |, with the `cd`s they follow (a block
    runs in one shell from the repository root) and their VAR=value prefixes.
    """
    found, cwd = [], "."
    for line in shell_lines(block):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        pieces: list[list[str]] = [[]]
        tokens = list(lexer)
        skip = False
        for token in tokens:
            if skip:
                skip = False
            elif token in OPERATORS:
                pieces.append([])
            elif token in REDIRECTS:
                skip = True  # its file
            else:
                pieces[-1].append(token)
        for piece in pieces:
            env = {}
            while piece and ASSIGNMENT.match(piece[0]):
                name, _, value = piece.pop(0).partition("=")
                env[name] = value
            if not piece:
                continue
            command = Command(block, piece, cwd, env)
            if piece[0] == "cd":
                cwd = os.path.normpath(os.path.join(cwd, piece[1]))
            found.append(command)
    return found


ALL_COMMANDS = [c for b in blocks_of(SHELL | CONSOLE) for c in commands(b)]


def path_in(command: Command, name: str) -> Path:
    return REPO / command.cwd / name


# Every file of the checkout that git tracks or would track (untracked, not ignored).
REPO_LISTING = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=True,
).stdout.split()


@functools.cache
def repo_text() -> str:
    """Every tracked text file of the repository but these pages (for names they mention)."""
    shown = {page_id(page) for page in pages()}
    texts = []
    for name in REPO_LISTING:
        path = REPO / name
        if name not in shown and path.is_file() and path.stat().st_size < 1_000_000:
            with contextlib.suppress(UnicodeDecodeError):
                texts.append(path.read_text(encoding="utf-8"))
    return "\n".join(texts)


FILE_OPTIONS = {"--configfile", "--workflow-profile", "--profile", "--snakefile"}


@functools.cache
def snakemake_parser():
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


def check_snakemake(command: Command) -> list[str]:
    """Snakemake's own argument parser accepts the options (the dry runs are below)."""
    parser = snakemake_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(command.argv[1:])
    except SystemExit:
        said = stderr.getvalue().strip().splitlines() or ["(nothing)"]
        return [f"snakemake refuses the options: {said[-1]}"]
    problems = []
    for option, value in itertools.pairwise(command.argv):
        if option in FILE_OPTIONS and not path_in(command, value).exists():
            problems.append(f"{value} does not exist")
    return problems


def check_python(command: Command) -> list[str]:
    args = command.argv[1:]
    if args[:1] == ["-m"]:
        module = args[1]
        return [] if importlib.util.find_spec(module) else [f"no module {module}"]
    script = path_in(command, args[0])
    return [] if script.is_file() else [f"no script {script.relative_to(REPO)}"]


def check_pip(command: Command) -> list[str]:
    args = command.argv[1:]
    problems = [] if args[:1] == ["install"] else [f"pip {args[:1]}: only `pip install` is shown"]
    for option, value in itertools.pairwise(args):
        if (
            option in {"-r", "--requirement", "-e", "--editable"}
            and not path_in(command, value).exists()
        ):
            problems.append(f"{value} does not exist")
    return problems


def declared_markers() -> set[str]:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    markers = settings["tool"]["pytest"]["ini_options"]["markers"]
    return {marker.split(":")[0].strip() for marker in markers}


def expression_words(expression: str) -> set[str]:
    return set(re.findall(r"\w+", expression)) - {"and", "or", "not"}


# pytest options that take a value (pytest-xdist's among them), with the values they take.
PYTEST_VALUES = {"-n": r"\d+|auto|logical", "--dist": r"load|loadscope|loadfile|loadgroup|no"}


def check_pytest(command: Command) -> list[str]:
    args, problems, paths, names = command.argv[1:], [], [], set()
    i = 0
    while i < len(args):
        if args[i] == "-m":
            unknown = expression_words(args[i + 1]) - declared_markers()
            problems += [f"marker {m} is not declared in pyproject.toml" for m in unknown]
            i += 2
        elif args[i] == "-k":
            names = expression_words(args[i + 1])
            i += 2
        elif args[i] in PYTEST_VALUES:
            if not re.fullmatch(PYTEST_VALUES[args[i]], args[i + 1]):
                problems.append(f"{args[i]} {args[i + 1]}: not {PYTEST_VALUES[args[i]]}")
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            paths.append(path_in(command, args[i].split("::")[0]))
            i += 1
    problems += [f"{p.relative_to(REPO)} does not exist" for p in paths if not p.exists()]
    tests = "\n".join(p.read_text(encoding="utf-8") for p in paths if p.is_file())
    problems += [f"-k {name}: no such test in {args}" for name in names if name not in tests]
    problems += [f"nothing reads {name}" for name in command.env if name not in repo_text()]
    return problems


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags (`!reset`, `!override`): each read as its value."""


ComposeLoader.add_multi_constructor(
    "!",
    lambda loader, _tag, node: (
        loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
    ),
)


def compose_services(files: list[Path]) -> dict[str, dict]:
    services: dict[str, dict] = {}
    for path in files:
        compose = yaml.load(path.read_text(encoding="utf-8"), Loader=ComposeLoader)
        for name, service in (compose.get("services") or {}).items():
            services.setdefault(name, {}).update(service or {})
    return services


def check_docker(command: Command) -> list[str]:
    args = command.argv[1:]
    if args[:1] == ["compose"]:
        return check_compose(command, args[1:])
    if args[:1] == ["build"]:
        return check_docker_build(command, args[1:])
    return [f"docker {args[:1]}: not in COMMANDS"]


def check_compose(command: Command, args: list[str]) -> list[str]:
    files, rest = [], []
    i = 0
    while i < len(args):
        if args[i] in {"-f", "--file"}:
            files.append(path_in(command, args[i + 1]))
            i += 2
        else:
            rest.append(args[i])
            i += 1
    files = files or [path_in(command, "compose.yaml")]
    missing = [f"{f.relative_to(REPO)} does not exist" for f in files if not f.is_file()]
    if missing:
        return missing
    services = compose_services(files)
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    unread = [f"the Compose files never read {name}" for name in command.env if name not in text]
    if unread:
        return unread
    if rest[:1] == ["run"]:
        named = [a for a in rest[1:] if not a.startswith("-")]
        if not named or named[0] not in services:
            return [f"no service {named[:1]} in {[f.name for f in files]}"]
        return []
    if rest[:1] == ["build"]:
        return [] if any("build" in s for s in services.values()) else ["no service builds"]
    return [f"docker compose {rest[:1]}: not in COMMANDS"]


def check_docker_build(command: Command, args: list[str]) -> list[str]:
    dockerfile, problems, context = path_in(command, "Dockerfile"), [], None
    options: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        if args[i] in {"-f", "--file", "-t", "--tag", "--build-arg", "--secret"}:
            options.append((args[i], args[i + 1]))
            i += 2
        else:
            context = args[i]
            i += 1
    for option, value in options:
        if option in {"-f", "--file"}:
            dockerfile = path_in(command, value)
    if not dockerfile.is_file():
        return [f"{dockerfile.relative_to(REPO)} does not exist"]
    text = dockerfile.read_text(encoding="utf-8")
    for option, value in options:
        if option == "--build-arg":
            name = value.split("=")[0]
            if not re.search(rf"^ARG {name}\b", text, re.MULTILINE):
                problems.append(f"the Dockerfile has no ARG {name}")
        if option == "--secret":
            secret = dict(part.split("=", 1) for part in value.split(","))["id"]
            if f"id={secret}" not in text:
                problems.append(f"the Dockerfile mounts no secret {secret}")
    if context is None or not path_in(command, context).is_dir():
        problems.append(f"the build context {context} is not a folder")
    return problems


def check_apptainer(command: Command) -> list[str]:
    """`apptainer pull|build FILE SOURCE`: the image is the one config/config.yaml names."""
    image = BASE_CONFIG["container"].removeprefix("docker://")
    source = command.argv[-1]
    if command.argv[1] not in {"pull", "build"} or source.split("://", 1)[-1] != image:
        return [f"not the configured image {image}"]
    if not command.argv[2].endswith(".sif"):
        return ["the image file is not a .sif"]
    return []


def check_script(command: Command) -> list[str]:
    """A repository script: it exists, is executable, and reads the variables set for it."""
    script = path_in(command, command.argv[0])
    if not script.is_file() or not os.access(script, os.X_OK):
        return [f"{command.argv[0]} is not an executable file"]
    text = script.read_text(encoding="utf-8")
    return [f"{script.name} never reads {name}" for name in command.env if name not in text]


def tool_path(name: str) -> str | None:
    return shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def check_tool(command: Command) -> list[str]:
    """An installed tool (its --help lists the options shown: below); a linter's paths exist."""
    name = command.argv[0]
    if tool_path(name) is None:
        return [] if name in OPTIONAL_TOOLS else [f"{name} is not installed (requirements-dev.txt)"]
    if name in LINTERS:
        paths = [a for a in command.argv[1 + LINTERS[name] :] if not a.startswith("-")]
        return [f"{p} does not exist" for p in paths if not path_in(command, p).exists()]
    return []


def check_cd(command: Command) -> list[str]:
    folder = path_in(command, command.argv[1])
    return [] if folder.is_dir() else [f"no folder {command.argv[1]}"]


def nothing(command: Command) -> list[str]:
    return []


# How each program is checked here; a program not in this table fails the test.
COMMANDS = {
    "snakemake": check_snakemake,  # and a dry run: test_snakemake_commands_dry_run
    "python": check_python,  # and --help: test_scripts_and_tools_answer_help
    "python3": check_python,
    "pip": check_pip,
    "pytest": check_pytest,
    "docker": check_docker,
    "apptainer": check_apptainer,
    "mlflow": check_tool,
    "ruff": check_tool,
    "snakefmt": check_tool,
    "dot": check_tool,
    "cd": check_cd,  # followed: the block's later commands run there
    "export": nothing,  # the shell's own
    ".": nothing,
    "source": nothing,
    "apt-get": nothing,  # NOT_RUN
}
OPTIONAL_TOOLS = {"dot"}  # Graphviz: only to draw docs/rulegraph.svg again
LINTERS = {"ruff": 1, "snakefmt": 0}  # their words after the subcommand (if any) are paths

# What is not run here, and why: each command a pattern matches is only checked as above.
NOT_RUN = {
    r"^\. |^source |^export ": "changes the shell only",
    r"^apt-get ": "installs system packages (root, a network)",
    r"^docker ": "needs a Docker engine: its files, services, build arguments are checked",
    r"^apptainer ": "needs Apptainer and the registry: the image name is checked",
    r"^pip ": "installs packages: its requirement files are checked",
    r"^pytest": "runs tests: its paths, markers and -k names are checked",
    r"^python3 -m venv ": "makes a virtual environment",
    r"^\S+\.sh( |$)": "builds images or starts a cluster: the script and its variables are checked",
    r"--report\b": "needs finished results (tests/test_workflow.py reports a finished workflow)",
    r"--lint\b": "tests/test_workflow.py runs the linters",
    r"sweep_1000\.yaml": "12,015 jobs, 36 s: tests/test_sweep.py checks its 1,000 points",
    r"^(ruff|snakefmt|mlflow|dot) ": "a tool's run: its --help lists the options shown",
    r"^python3? (?!-m )": "a script's run (it trains, searches or benchmarks): its --help works",
}
# Dry runs that need a stand-in: `--sdm apptainer` wants an apptainer binary on PATH.
APPTAINER = re.compile(
    r"--(sdm|software-deployment-method) apptainer|--use-(singularity|apptainer)"
)
STUBS = REPO / "tests" / "stubs"  # tests/stubs/apptainer: a stub, not Apptainer


def program(command: Command) -> str:
    name = command.argv[0]
    return name if name in COMMANDS or "/" not in name else "<script>"


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_shell_command_is_checked(page: Path) -> None:
    problems = []
    for command in (c for c in ALL_COMMANDS if c.block.page == page):
        name = program(command)
        check = check_script if name == "<script>" else COMMANDS.get(name)
        if check is None:
            problems.append(f"{command}: no check for {name} (add it to COMMANDS)")
            continue
        if name not in {"snakemake", "cd"} and not any(
            re.search(pattern, command.words) for pattern in NOT_RUN
        ):
            problems.append(f"{command}: neither run here nor in NOT_RUN")
        problems += [f"{command}: {problem}" for problem in check(command)]
    assert not problems, "\n".join(problems)


def help_commands() -> list[tuple[Command, list[str]]]:
    """(command, the --help invocations that must succeed) for scripts and tools."""
    found = []
    for command in ALL_COMMANDS:
        argv, name = command.argv, command.argv[0]
        if name in {"python", "python3"} and argv[1:2] != ["-m"]:
            tries = [[sys.executable, argv[1], "--help"]]
            if len(argv) > 2 and re.fullmatch(r"[a-z][a-z_-]*", argv[2]):  # a subcommand
                tries.append([sys.executable, argv[1], argv[2], "--help"])
            found.append((command, tries))
        elif name in {"mlflow", "ruff", "snakefmt"}:
            sub = argv[1:2] if name in {"mlflow", "ruff"} else []
            found.append((command, [[name, *sub, "--help"]]))
    return found


@pytest.mark.slow
def test_scripts_and_tools_answer_help() -> None:
    """Each script shown answers --help (and its subcommand's); each tool's --help lists
    the options shown (mlflow's takes seconds to import).
    """
    problems, answered = [], {}
    env = workflow_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for command, tries in help_commands():
        helps = []
        for argv in tries:
            key = (command.cwd, tuple(argv))
            if key not in answered:
                answered[key] = subprocess.run(
                    argv,
                    cwd=REPO / command.cwd,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            result = answered[key]
            if result.returncode != 0:
                problems.append(f"{command}: {shlex.join(argv)} failed: {result.stderr[-300:]}")
            helps.append(result.stdout)
        if command.argv[0] not in {"python", "python3"}:
            flags = [a.split("=")[0] for a in command.argv if a.startswith("--")]
            problems += [f"{command}: {f} not in its --help" for f in flags if f not in helps[0]]
    assert not problems, "\n".join(problems)


def dry_runs() -> dict[tuple[str, str], list[Command]]:
    """The snakemake commands to dry-run, grouped by (config, arguments): each once."""
    runs: dict[tuple[str, str], list[Command]] = {}
    for command in ALL_COMMANDS:
        if command.argv[0] != "snakemake":
            continue
        if any(re.search(p, command.words) for p in NOT_RUN) or "--rulegraph" in command.argv:
            continue
        config = yaml.safe_dump(page_config(command.block.page, command.block.line))
        runs.setdefault((config, shlex.join([command.cwd, *command.argv[1:]])), []).append(command)
    return runs


@pytest.mark.slow
def test_snakemake_commands_dry_run(tmp_path: Path) -> None:
    """Every snakemake command shown plans its jobs (`-n`) in a copy of the repository,
    with the config blocks above it on its page in config/config.yaml.
    """
    repo = copy_repo(tmp_path / "repo")
    problems = []
    for (config, _), shown in dry_runs().items():
        command = shown[0]
        (repo / "config" / "config.yaml").write_text(config, encoding="utf-8")
        env = workflow_env()
        if APPTAINER.search(command.text):
            env["PATH"] = f"{STUBS}{os.pathsep}{env['PATH']}"
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", *command.argv[1:]],
            cwd=repo / command.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            where = ", ".join(str(c.block.where) for c in shown)
            problems.append(
                f"{where}: {command.text}\n{result.stdout[-1500:]}{result.stderr[-1500:]}"
            )
    assert not problems, "\n\n".join(problems)


@pytest.mark.slow
def test_the_rule_graph_picture_shows_every_rule() -> None:
    """docs/rulegraph.svg (drawn by the command in docs/development.md) has every rule of
    the workflow's rule graph.
    """
    shown = [c for c in ALL_COMMANDS if c.argv[:2] == ["snakemake", "--rulegraph"]]
    assert shown, "docs/development.md shows how to draw docs/rulegraph.svg"
    dot = subprocess.run(
        [sys.executable, "-m", "snakemake", "--rulegraph"],
        cwd=REPO,
        env=workflow_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    rules = set(re.findall(r'label = "(\w+)"', dot))
    svg = (DOCS / "rulegraph.svg").read_text(encoding="utf-8")
    assert rules and all(f">{rule}</text>" in svg for rule in rules), rules


# --- links --------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
INLINE_CODE = re.compile(r"`[^`]*`")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as -."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose(page), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", prose(page))
    return LINK.findall(text) + REFERENCE.findall(text)


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_relative_link_resolves(page: Path) -> None:
    problems = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: {linked} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{target}: no heading #{anchor} in {page_id(linked)}")
    assert not problems, f"{page_id(page)}:\n" + "\n".join(problems)


# --- the README ---------------------------------------------------------------------------


def test_the_readme_is_a_front_door() -> None:
    assert README.stat().st_size <= README_LIMIT, "move the detail into a page of docs/"


def test_the_readme_links_every_page() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    missing = [page_id(p) for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not missing, f"the README's documentation table lacks {missing}"


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    """The README's test command (a venv of requirements-dev.txt, then pytest) is what
    .ci/run runs; its time is stated as "about N minutes".
    """
    shown = [c for c in ALL_COMMANDS if c.block.page == README]
    assert any("requirements-dev.txt" in c.argv for c in shown)
    (command,) = [c.argv for c in shown if c.argv[:1] == ["pytest"]]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "requirements-dev.txt" in ci
    # CI runs the same tests in two parts, with the README's options: the fast ones first,
    # stopping at the first failure, then the slow ones.
    assert " ".join(["pytest", "-m", '"not slow"', "-x", *command[1:]]) in ci
    assert " ".join(["pytest", "-m", "slow", *command[1:]]) in ci
    assert re.search(r"takes about\s+\d+\s+minutes", README.read_text(encoding="utf-8"))


def repository_map() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The repository", 1)[1]
    (block,) = [b for b in blocks(README) if b.info == "text" and b.text.strip() in section][:1]
    return block.text


def test_the_repository_map_names_what_is_there() -> None:
    """Every path at the start of a line of the README's map exists; every top-level
    folder and every file of workflow/ is in it.
    """
    listed = REPO_LISTING
    mapped = repository_map()
    named = [line.split()[0] for line in mapped.splitlines() if line and not line[0].isspace()]
    missing = [name for name in named if not (REPO / name.rstrip("/")).exists()]
    assert not missing, f"the map names what does not exist: {missing}"
    top = sorted({name.split("/")[0] for name in listed if "/" in name})
    unmapped = [folder for folder in top if f"{folder}/" not in mapped]
    assert not unmapped, f"top-level folders missing from the map: {unmapped}"
    workflow = [n for n in listed if n.startswith("workflow/")]
    unnamed = [n for n in workflow if Path(n).name not in mapped]
    assert not unnamed, f"files of workflow/ missing from the map: {unnamed}"
