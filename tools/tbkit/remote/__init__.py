"""A real Tinybird: the installed `tb` CLI, Tinybird's HTTP API, and `tb test` files.

- `tb.py`: running `tb` (fmt, deploy) and where Tinybird Local and Cloud are (`.env`, `.tinyb`, the environment).
- `client.py`: an HTTP client for Tinybird's API (`tbkit serve`, Tinybird Local and Cloud alike).
- `testfiles.py`: `tests/<pipe>.yaml` as `tb test` reads and writes them.
"""
