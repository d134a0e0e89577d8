"""Measured tables in the prose, kept equal to the results they come from. A markdown file marks a generated table

    <!-- results: checkpoints/mnist/evaluation/mnist-guidance-methods compact -->
    ...the table...
    <!-- /results -->

naming the evaluation folder (its results.json) and the table's kind (TABLES); a model card's
`## Evaluation: <name>` section is its `evaluation/<name>/` folder's results.md with plots and grid links. `sync`
rewrites both from the results on disk (`scripts/sync_result_tables.py`); with check=True it only lists the files
that differ, which the test suite asserts is none, so no README number can drift from its results.json.
"""

import json
import re
from pathlib import Path

from .method_table import best_points_table, compact_table, equal_cost_table, is_guider_sweep
from .reports import evaluation_section_text

TABLES = {"best": best_points_table, "equal-cost": equal_cost_table, "compact": compact_table}
MARKED = re.compile(r"(<!-- results: (?P<folder>\S+) (?P<kind>\S+) -->\n)(?P<table>.*?)(?=<!-- /results -->)", re.S)
CARD_SECTION = re.compile(r"^## Evaluation: (?P<name>\S+)\n\n(?P<text>.*?)(?=^## |\Z)", re.S | re.M)
GRID_ROWS = re.compile(r"Sample grids \(a row per (\w+)\)")


def marked_table(folder: str, kind: str, root: Path) -> str:
    """The table of `kind` from the folder's results.json; a clear error for an unknown kind or a missing folder."""
    if kind not in TABLES:
        raise ValueError(f"<!-- results: {folder} {kind} -->: the kind must be one of {', '.join(TABLES)}.")
    path = root / folder / "results.json"
    if not path.is_file():
        raise ValueError(f"<!-- results: {folder} {kind} -->: {path} does not exist.")
    report = json.loads(path.read_text())
    if not is_guider_sweep(report):
        raise ValueError(f"<!-- results: {folder} {kind} -->: {path} is not a sweep of guiders with accuracy.")
    return TABLES[kind](report) + "\n"


def synced_markers(text: str, root: Path) -> str:
    """`text` with every marked table regenerated; everything outside the markers byte for byte."""
    return MARKED.sub(lambda m: m.group(1) + marked_table(m["folder"], m["kind"], root), text)


def synced_card(text: str, model_folder: Path) -> str:
    """A model card with each `## Evaluation: <name>` section whose folder holds a results.md regenerated from it
    (sections of folders shipped without results.md are left as they are)."""

    def section(match: re.Match) -> str:
        folder = model_folder / "evaluation" / match["name"]
        if not (folder / "results.md").is_file():
            return match.group(0)
        rows = GRID_ROWS.search(match["text"])
        body = evaluation_section_text(folder, Path("evaluation") / match["name"], rows[1] if rows else "class")
        return f"## Evaluation: {match['name']}\n\n{body.strip()}\n\n"

    synced = CARD_SECTION.sub(section, text)
    return synced.rstrip("\n") + "\n"


def documents(root: Path) -> list[Path]:
    """The markdown files that may hold marked tables: the README, docs/ and the shipped models' cards."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "checkpoints").glob("*/README.md"))]


def sync(root, check: bool = False) -> list[Path]:
    """Regenerate every marked table and card evaluation section under `root`; the files that changed (with
    check=True: that would change, writing nothing)."""
    root = Path(root)
    changed = []
    for path in documents(root):
        if not path.is_file():
            continue
        text = path.read_text()
        new = synced_markers(text, root)
        if path.parent.parent == root / "checkpoints":
            new = synced_card(new, path.parent)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    return changed
