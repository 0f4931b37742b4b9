"""What every benchmark script shares: the command that reproduces it, and its README section.

Each script prints its results as markdown; with `--write` it replaces its own section of
benchmarks/README.md, between the markers `<!-- <name>:begin -->` and `<!-- <name>:end -->`
(appended at the end when the section is new).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

README_HEADER = """# Benchmarks

Run from the repository root. Each script prints its results as markdown; with `--write` it
replaces its own section below (between its markers).
"""


def command_line(script: str, *, prefix: str = "") -> str:
    """The command that ran `script` (its `__file__`), relative to the working directory."""
    exe = Path(sys.executable)
    try:
        exe_text = str(exe.relative_to(Path.cwd()))
    except ValueError:
        exe_text = "python"
    relative = os.path.relpath(Path(script).resolve(), Path.cwd())
    return " ".join([*([prefix] if prefix else []), exe_text, relative, *sys.argv[1:]])


def write_section(readme: Path, begin: str, end: str, section: str) -> None:
    """Replace the text between the markers `begin` and `end` of `readme` with `section`."""
    block = f"{begin}\n{section}\n{end}"
    text = readme.read_text() if readme.exists() else README_HEADER
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


def code_version(repo: Path, paths: tuple[str, ...] = ("intelgraph_privacy",)) -> str:
    """The commit measured, and whether the sources under `paths` differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *paths],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "an unknown commit"
    if not commit:
        return "an unknown commit"
    state = "with local changes" if dirty else "unmodified"
    where = ", ".join(f"`{p}/`" for p in paths)
    return f"commit `{commit}` ({where} {state})"
