"""Refreshes the README's result tables from the run folders they were pasted from.

A pasted block starts with a marker line naming its folder and section:

    <!-- bindbench report runs/default-quick-e0a3dad8 --markdown: composition -->

(`claims` for the claims table, else an experiment's name); the lines after it, up to the
line `<!-- end -->`, are replaced by that section of `bindbench report FOLDER --markdown`,
built from the folder's report.json (`bindbench report FOLDER` rebuilds it). A folder
that is not on this machine is left as it is and named.

    python tools/readme_tables.py [README.md]     # rewrites the file; --check: only say what differs
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bindbench.core.report import markdown_sections

MARKER = re.compile(r"^<!-- bindbench report (\S+) --markdown: (\w+) -->$")
END = "<!-- end -->"


def refresh(text: str, root: Path) -> tuple[str, list[str]]:
    """The text with every marked block replaced, and the folders that are not here."""
    lines, out, missing, i = text.split("\n"), [], [], 0
    sections: dict[str, dict] = {}
    while i < len(lines):
        out.append(lines[i])
        found = MARKER.match(lines[i])
        i += 1
        if not found:
            continue
        folder, section = found.groups()
        end = lines.index(END, i)  # a marker without its end is a README to fix by hand
        path = root / folder / "report.json"
        if not path.exists():
            missing.append(folder)
            out += lines[i:end]
        else:
            if folder not in sections:
                sections[folder] = markdown_sections(json.loads(path.read_text()))
            if section not in sections[folder]:
                raise SystemExit(f"readme_tables: {folder} has no section {section!r}")
            out += ["", sections[folder][section], ""]
        i = end
    return "\n".join(out), sorted(set(missing))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"] or ["README.md"]
    readme = Path(paths[0])
    text = readme.read_text()
    new, missing = refresh(text, readme.parent)
    for folder in missing:
        print(f"readme_tables: {folder} is not here; its tables are left as they are")
    if check:
        print(
            "readme_tables: up to date" if new == text else "readme_tables: tables differ from their folders"
        )
        return int(new != text)
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
