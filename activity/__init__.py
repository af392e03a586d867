"""The pure domain of devpulse.

Nothing in this package imports Flask, Celery, SQLAlchemy or Redis, or does I/O:
every rule is a plain function over plain data so the web edge and the workers
share one definition and the rules are unit-tested in milliseconds.
"""
