"""The local stack of `make run`, `make test` and `make bench`: embedded real servers and a Procfile runner.

Development tooling only: it needs the `[dev]` extra and is not part of the installed packages.
"""
