"""README.md's configuration table, made from the variables' declarations.

    .venv/bin/python -m serving.core.settings_table     # rewrites the table in README.md

The table is this module's output, between two markers; tests/serving/test_settings.py
fails when README.md holds anything else there, so the README lists every variable the
fields declare (``ENV_VARS``), with their help, and nothing they do not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from pipelines.env_fields import EnvVar, env_vars
from serving.core.settings import ENV_VARS, SETTING_GROUPS

logger = logging.getLogger(__name__)

BEGIN = (
    "<!-- The configuration table, generated from the declarations by "
    "`python -m serving.core.settings_table`: edit the help there, not here. -->"
)
END = "<!-- End of the generated configuration table. -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def configuration_table() -> str:
    """One Markdown table a group of variables, under the group's docstring and module."""
    parts: list[str] = []
    for group in SETTING_GROUPS:
        summary = (group.__doc__ or group.__name__).strip().splitlines()[0]
        where = group.__module__.replace(".", "/") + ".py"
        parts += ["", f"**{summary.rstrip('.')}** (`{where}`)", "", *_rows(env_vars(group))]
    return "\n".join(parts[1:])


def _rows(variables: Iterable[EnvVar]) -> list[str]:
    rows = ["| variable | what |", "|---|---|"]
    for var in variables:
        what = var.help.replace("|", r"\|")  # a bare | would end the cell
        rows.append(f"| `{var.name}` | {what} |")
    return rows


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the generated table."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the configuration table's markers: {BEGIN} ... {END}")
    return f"{readme[: start + len(BEGIN)]}\n{configuration_table()}\n{readme[end:]}"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    README.write_text(readme_with_table(README.read_text()))
    logger.info("wrote the configuration table of %s (%d variables)", README, len(ENV_VARS))


if __name__ == "__main__":
    main()
