// Handles each message of the queue `jobs`: `{"id": "42", "text": "..."}`.
//
// A message that is not such JSON can never succeed, so it goes straight to the
// dead-letter queue; any other exception is retried with the function's policy.
import { kv, log, PermanentError } from "@gust/sdk";

/** @param {import("@gust/sdk").GustEvent} event */
export function handle(event) {
  let job;
  try {
    job = event.json();
  } catch (e) {
    throw new PermanentError(`not a job: ${e.message}`);
  }
  if (typeof job?.id !== "string" || typeof job?.text !== "string") {
    throw new PermanentError("not a job: needs string fields `id` and `text`");
  }
  const words = job.text.split(/\s+/).filter(Boolean).length;
  log.info(`job ${job.id} (attempt ${event.attempt}): ${words} words`);
  kv.open("done").set(job.id, job.text.toUpperCase());
}
