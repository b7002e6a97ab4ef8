//! Ingestion of the IoT example: functions `ingest-mqtt` (MQTT messages on
//! `devices/<id>/telemetry` from the embedded broker) and `ingest-http`
//! (`POST /api/devices/<id>/telemetry`, one reading or an array of them).
//!
//! Both take the device id from where the device spoke (the MQTT topic or
//! the URL), check that each reading is a JSON object, stamp it with the
//! device id and the transport, and append it to the stream bound as
//! `readings` under the device id as key. Same key, same partition: the
//! stream keeps each device's readings in the order they were appended.
//! Parsing the fields is the stream consumer's job, so a device with a
//! newer payload format never loses data at the door.

use gust_sdk::http::{self, Request, Response};
use gust_sdk::serde_json::{self, Map, Value as Json};
use gust_sdk::{Event, EventError, log, stream};

/// The stream binding every reading is appended to.
const READINGS: &str = "readings";

/// Longest accepted device id.
const MAX_DEVICE_ID: usize = 64;

/// Whether `id` is usable as a device id: 1 to 64 of `A-Z a-z 0-9 - _ .`.
fn valid_device(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The device id in an MQTT topic `devices/<id>/telemetry`.
fn device_of_topic(topic: &str) -> Option<&str> {
    let id = topic.strip_prefix("devices/")?.strip_suffix("/telemetry")?;
    valid_device(id).then_some(id)
}

/// Stamps `reading` with its device and transport and appends it.
fn append(device: &str, via: &str, reading: Map<String, Json>) -> Result<(), stream::Error> {
    let mut record = reading;
    record.insert("device".into(), device.into());
    record.insert("via".into(), via.into());
    stream::append_json(READINGS, device, &record).map(|_| ())
}

/// `ingest-mqtt`: one MQTT message (subject = topic, data = payload) is
/// one reading. A payload that is not a JSON object is logged and dropped
/// (retrying cannot fix it); a failed append is retried.
#[gust_sdk::event]
fn on_message(event: Event) -> Result<(), EventError> {
    let topic = event.subject().unwrap_or_default();
    let Some(device) = device_of_topic(topic) else {
        log::warn!("ignoring message on unexpected topic `{topic}`");
        return Ok(());
    };
    let reading = match serde_json::from_slice::<Json>(event.data()) {
        Ok(Json::Object(reading)) => reading,
        Ok(_) | Err(_) => {
            log::warn!("device {device}: dropping a payload that is not a JSON object");
            return Ok(());
        }
    };
    append(device, "mqtt", reading).map_err(|e| EventError::retryable(e.to_string()))
}

/// `ingest-http`: a reading object or an array of them for the device in
/// the URL; `202 {"accepted": n}` once all are in the stream, `400` for a
/// body that is neither, `404` for an unusable device id.
#[gust_sdk::http]
fn on_request(req: Request) -> http::Result {
    let device = req.param("id").unwrap_or_default();
    if !valid_device(device) {
        return Err(http::Error::new(404, format!("no device `{device}`")));
    }
    let readings = match req.json::<Json>() {
        Ok(Json::Object(one)) => vec![one],
        Ok(Json::Array(many)) => many
            .into_iter()
            .map(|r| match r {
                Json::Object(r) => Ok(r),
                _ => Err(http::Error::bad_request(
                    "every reading must be a JSON object",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(http::Error::bad_request(
                "expected a reading (JSON object) or an array of readings",
            ));
        }
    };
    let accepted = readings.len();
    for reading in readings {
        append(device, "http", reading)?;
    }
    Ok(Response::json(&serde_json::json!({ "accepted": accepted })).with_status(202))
}
