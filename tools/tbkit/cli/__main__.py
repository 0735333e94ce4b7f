"""`python -m tbkit.cli`: the `tbkit` command."""

from . import main

main()
