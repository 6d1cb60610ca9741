"""The plan's one entry point: `python run.py [all|prepare|train|evaluate|config]`.

`python run.py --epochs 2` is the quick validation. The stages and their options are
declared in plan.py; the harness (harness/cli.py) parses the command line and runs them.
"""

import sys
from pathlib import Path

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent))
