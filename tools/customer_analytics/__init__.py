"""This project's own code beside the toolkit: its data generator, request parameters and DuckDB peer.

`workload.WORKLOAD` is what pyproject.toml's `[tool.tbkit] workload` names: `tbkit datagen`, `tbkit bench` and
`tbkit check --budgets` reach the generator through it. tbkit itself names nothing of this project.
"""
