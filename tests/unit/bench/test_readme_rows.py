"""The README's benchmark rows say what the committed results say (``bench/readme_rows.py``).

Why a test: the ingestion row once quoted an older run (625k rows/s, "memory not flat") while
``data.md`` said 309k rows/s and flat. Now the rows are rendered from ``bench/results/*.json``; this
fails as soon as someone edits one side without the other.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from recflow.config.settings import project_root


def _load(name: str) -> ModuleType:
    path = project_root() / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows() -> ModuleType:
    return _load("readme_rows")


def test_readme_rows_match_the_committed_results(rows: ModuleType) -> None:
    readme = (project_root() / "README.md").read_text().split("\n")
    for prefix, expected in rows.expected_rows().items():
        found = [line for line in readme if line.startswith(prefix)]
        assert found == [expected], (
            f"README's row {prefix!r} disagrees with bench/results: run `python bench/readme_rows.py`\n"
            f"README:   {found}\nexpected: {expected}"
        )


def test_a_changed_result_changes_the_row_and_sync_writes_it(rows: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for name in ("data.json", "scoring.json"):
        (results / name).write_text((project_root() / "bench" / "results" / name).read_text())
    data = json.loads((results / "data.json").read_text())
    ingest = next(r for r in data["results"] if r["mode"] == "ingest")
    ingest["rows_per_s"] = 625_000  # the stale number the README once quoted
    (results / "data.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text((project_root() / "README.md").read_text())

    assert rows.expected_rows(results)["| ingestion end to end"] not in readme.read_text()
    rows.sync_readme(readme, results)
    assert "ingest 625,000 rows/s" in readme.read_text()
    assert rows.expected_rows(results)["| ingestion end to end"] in readme.read_text().split("\n")


def test_a_readme_without_the_row_is_an_error(rows: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no benchmark table here\n")
    with pytest.raises(SystemExit, match="expected one row starting"):
        rows.sync_readme(readme)
