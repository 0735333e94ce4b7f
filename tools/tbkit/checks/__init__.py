"""The kinds of check `tbkit check` composes, one module each.

`cases` runs golden cases against a target; `coverage` says which parameters and template branches those cases
exercise; `budgets` measures the rows and bytes each endpoint reads on generated data; `report` gathers every
outcome and writes it as JUnit XML or GitHub annotations. Contracts, data-quality assertions and materialization
audits are their own top-level modules (`contracts`, `assertions`, `audit`), since other commands use them too.
"""
