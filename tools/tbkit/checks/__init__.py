"""`tbkit check` and the checks it composes, one module each, over a `targets.Target`.

- `run.py`: which checks run, on what target, in which order; `targets.py`: the embedded engine or an HTTP API.
- `golden.py`: cases and golden files, compared as data; `cases.py`: running them.
- `contracts.py`: endpoint contracts; `assertions.py`: data-quality SQL; `audit.py`: materialized targets
  recomputed; `coverage.py`: parameters and template branches the cases take; `budgets.py`: rows and bytes read
  on generated data.
- `report.py`: the report as JSON, JUnit XML or GitHub annotations; `diff.py`: the project against a git revision;
  `lint.py`: `tb fmt --diff` and the loader's validation; `export.py`: the cases as `tb test` files.
"""
