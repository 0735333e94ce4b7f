"""What a server keeps for the workspaces it serves, in its data directory.

- `registry.py`: the workspaces (the project's and those `tb` creates), found by name, id or token.
- `deployment.py`: a deployment's record; `deployments.py`: uploads diffed, built, staged and made live.
- `tokens.py`: admin, scoped and user tokens, and JWTs; `secrets.py`: secrets for `tb_secret()`.
- `jobs.py`: the Jobs API's record of finished appends; `files.py`: JSON files written whole or not at all.
"""
