"""Handles each message of the queue `jobs`: `{"id": "42", "text": "..."}`.

A message that is not such JSON can never succeed, so it goes straight to the
dead-letter queue; any other exception is retried with the function's policy.
"""

import gust
from gust import kv, log


@gust.event
def handle(event: gust.Event) -> None:
    try:
        job = event.json()
        job_id, text = str(job["id"]), str(job["text"])
    except (ValueError, KeyError, TypeError) as e:
        raise gust.Permanent(f"not a job: {e}")
    log.info(f"job {job_id} (attempt {event.attempt}): {len(text.split())} words")
    kv.open("done").set(job_id, text.upper())
