"""`python -m roadnode.cli`: the same as the `roadnode` console script."""

from roadnode.cli import entry

entry()
