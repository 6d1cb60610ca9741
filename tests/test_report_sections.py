"""The report's component table, from a FAKE component list (the project's `components`
input: each module's path, first docstring line and plan ids).
"""

from __future__ import annotations

import re

from report_sections import components


def test_components_show_each_listed_module_with_its_parameters() -> None:
    modules = [
        {"path": "model/attention.py", "doc": "M4 attention | RoPE", "plan_ids": ["M4", "M5"]},
        {"path": "utils/io.py", "doc": "Atomic writes.", "plan_ids": []},
    ]
    summary = {"parameters_by_module": {"model/attention.py": 12345}, "parameters": 67890}
    text = components(summary, modules)
    rows = [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    assert rows[0] == ["Module", "Plan ids", "Description", "Parameters"]
    assert rows[2:] == [
        ["`model/attention.py`", "M4, M5", "M4 attention \\| RoPE", "12,345"],
        ["`utils/io.py`", "—", "Atomic writes.", "no parameters"],
    ]
    assert text.endswith("Total trainable parameters: 67,890.")
