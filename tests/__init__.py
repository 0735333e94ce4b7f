"""The test suite; `ROOT` is the repository the tests run against."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
