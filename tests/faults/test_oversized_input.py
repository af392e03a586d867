"""Fault 7: 2 MB of junk in an event (an extra key) and in the envelope (`client`), on the real stack.

Each junk event is rejected alone, naming its field, and the valid events beside it are stored and processed
exactly once; a batch with junk in its envelope is refused as a whole (413, nothing stored). The resend of a
batch answers `duplicate`, replaying the first reply (the junk event's rejection included).
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from sqlalchemy import text

from tests.faults.harness import INGEST_PATH, Ledger, assert_exact, check_store, make_batch, report, wait_terminal
from tests.support.factories import event

JUNK = 2 * 1024 * 1024


@pytest.mark.fault
def test_2mb_of_junk_is_rejected_by_name_and_blocks_nothing(fault_stack):
    stack = fault_stack()
    stack.start_web()
    stack.start_worker()
    ledger = Ledger()
    headers = {"Authorization": f"Bearer {stack.token}"}
    rejected = []
    started = time.monotonic()
    with requests.Session() as session:
        for i in range(5):
            sent = make_batch(10)
            junk = event(file="x")
            junk["junk"] = "j" * JUNK
            sent.body["events"].insert(i, junk)  # anywhere in the batch: the others are stored all the same
            r = session.post(stack.base_url + INGEST_PATH, json=sent.body, headers=headers, timeout=30)
            assert r.status_code == 202, r.text[:300]
            body = r.json()
            assert (body["accepted"], body["rejected"]) == (10, 1), body
            [error] = body["errors"]
            assert (error["index"], error["code"], error["field"]) == (i, "event_too_large", "junk")
            rejected.append(error)
            # The resend after a lost answer: the first reply replayed (its counts, and the junk's rejection).
            resent = ledger.post(session, stack, sent)
            assert resent.status == 200, resent
            again = session.post(stack.base_url + INGEST_PATH, json=sent.body, headers=headers, timeout=30).json()
            assert again["replay_of_first_reply"] is True
            assert (again["accepted"], again["duplicates"], len(again["duplicate_event_ids"]),
                    again["rejected"]) == (10, 0, 0, 1)
            assert [(e["index"], e["field"]) for e in again["errors"]] == [(i, "junk")]

        envelope = make_batch(10)
        envelope.body["client"]["junk"] = "j" * JUNK
        r = session.post(stack.base_url + INGEST_PATH, json=envelope.body, headers=headers, timeout=30)
        assert r.status_code == 413, r.text[:300]
        assert [d["field"] for d in r.json()["error"]["details"]] == ["client"]
        assert r.json()["error"]["code"] == "envelope_too_large"

    done = wait_terminal(stack, list(ledger.acked), 60)
    figures = check_store(stack, ledger)
    with stack.db.engine.connect() as c:
        refused = c.execute(text("SELECT count(*) FROM batches WHERE batch_id = CAST(:b AS uuid)"),
                            {"b": str(uuid.UUID(envelope.batch_id))}).scalar_one()
    assert refused == 0
    report("oversized_junk", figures, None, junk_events_rejected=len(rejected), field=rejected[0]["field"],
           envelope_status=413, seconds=round(done - started, 1))
    assert_exact(figures, expect_ack=5)
