"""`make bench` (`python -m bench`): devpulse's performance figures against the real stack.

Starts its own throwaway PostgreSQL (fsync ON), Redis, gunicorn and a Celery worker on 127.0.0.1,
measures ingest latency/throughput (beside a textbook Flask + SQLAlchemy ORM peer, bench/peers/, which is
not part of the product), a direct-to-PostgreSQL floor, end-to-end processing and a bare-chord
floor, prints a Markdown table and writes bench/results/latest.json. See bench/run.py.
"""
