"""A Tinybird project as files: loaded and validated, and where its parts are.

- `datafiles.py`: `load_project`, the project's datasources, pipes and nodes (Tinybird's parser, through the adapter).
- `tinybird_adapter.py`: the one module that calls into the `tinybird` package (parser, templates, table rewriter).
- `layout.py`: where the project, fixtures, cases and golden files are.
- `fixtures.py`: the fixture file of each datasource.
"""
