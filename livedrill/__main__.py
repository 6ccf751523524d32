"""`python -m livedrill`: the `livedrill` command (livedrill.launch)."""

from livedrill.launch import entry

entry()
