"""Where a repository keeps its Tinybird project, fixtures, cases and golden files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """The folders tbkit works with; by default `tinybird/` and `fixtures/` under the current folder."""

    project_dir: Path
    fixtures_dir: Path

    @classmethod
    def at(cls, project_dir: str | Path | None = None, fixtures_dir: str | Path | None = None) -> Layout:
        """The layout for the given folders, or the defaults relative to the current folder."""
        return cls(Path(project_dir or "tinybird"), Path(fixtures_dir or "fixtures"))

    @property
    def cases_dir(self) -> Path:
        """`fixtures/cases`: one `<endpoint>.yaml` of cases per endpoint."""
        return self.fixtures_dir / "cases"

    @property
    def golden_dir(self) -> Path:
        """`fixtures/golden`: one `<endpoint>/<case>.json` per case."""
        return self.fixtures_dir / "golden"

    @property
    def tb_fixtures_dir(self) -> Path:
        """`tinybird/fixtures`: one link per datasource, `<ds>.ndjson -> ../../fixtures/<ds>.ndjson`.

        `tb build` and `tb test run` append `tinybird/fixtures/<datasource>.ndjson` to each datasource. The
        folder holds only those links, not a link to all of `fixtures/`: `tb` scans the project three levels
        deep and warns about any deeper folder, which `fixtures/golden/<endpoint>/` would be.
        """
        return self.project_dir / "fixtures"

    @property
    def tests_dir(self) -> Path:
        """`tinybird/tests`: the `tb test` files `tbkit export-tests` writes."""
        return self.project_dir / "tests"
