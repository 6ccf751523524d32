"""Drill programmes: every core VM of every cluster drilled inside a quarter's change windows.

`spec` is the programme's YAML, `inventory` the VMs in its scope, `plan` the pure planner that assigns
them to windows, `cli` the `livedrill programme` commands.
"""
