"""`tbkit dev` and `tbkit check --watch`: the local loop.

- `loop.py`: what a save changed, the rebuild beside the served build, the affected cases rerun, the state
  `GET /v0/tbkit/checks` answers.
- `watch.py`: changes to the project's files, in bursts (watchdog).
"""
