"""Comparison peers for `make bench`: NOT part of devpulse.

Each module here is a deliberately ordinary implementation of the ingest endpoint, run by bench/run.py on
the same PostgreSQL and gunicorn settings as the product so that the report shows our figures beside a
well-known baseline. Nothing in app/, models/, tasks/ or activity/ imports from here.
"""
