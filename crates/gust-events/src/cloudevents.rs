//! CloudEvents 1.0 over HTTP (structured, binary and batch modes) and the
//! attribute map events travel with inside queues.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::Event;
use crate::percent::percent_decode;

/// Why a request is not a valid CloudEvent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CloudEventError {
    /// The body is not JSON (structured or batch mode).
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// A structured event is not a JSON object, or a batch not an array.
    #[error("{0}")]
    Shape(String),
    /// A required attribute is missing or empty.
    #[error("attribute `{0}` is required")]
    Missing(&'static str),
    /// `specversion` is not 1.0.
    #[error("specversion must be \"1.0\", not {0}")]
    Version(String),
    /// An attribute is given twice (two JSON keys or two `ce-` headers).
    #[error("attribute `{0}` is given more than once")]
    Duplicate(String),
    /// An attribute has the wrong type or an invalid name.
    #[error("attribute `{name}` is invalid: {why}")]
    Invalid {
        /// The attribute.
        name: String,
        /// What is wrong.
        why: String,
    },
}

const CORE: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
    "data_base64",
];

/// Parses a structured-mode event (`application/cloudevents+json`).
pub fn parse_structured(body: &[u8]) -> Result<Event, CloudEventError> {
    let value: StrictJson = serde_json::from_slice(body).map_err(json_error)?;
    from_json(value.0)
}

/// Parses a batch (`application/cloudevents-batch+json`): a JSON array of
/// structured events.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Event>, CloudEventError> {
    let value: StrictJson = serde_json::from_slice(body).map_err(json_error)?;
    let Value::Array(items) = value.0 else {
        return Err(CloudEventError::Shape(
            "a batch is a JSON array of events".into(),
        ));
    };
    items.into_iter().map(from_json).collect()
}

/// Marks the duplicate-key error of [`StrictJson`] so that it is reported
/// as [`CloudEventError::Duplicate`].
const DUPLICATE_KEY: &str = "duplicate key ";

fn json_error(e: serde_json::Error) -> CloudEventError {
    let text = e.to_string();
    match text.strip_prefix(DUPLICATE_KEY) {
        Some(rest) => {
            CloudEventError::Duplicate(rest.split(" at line").next().unwrap_or(rest).to_string())
        }
        None => CloudEventError::NotJson(text),
    }
}

/// A JSON value whose objects, down to the events of a batch, may not hold
/// the same key twice (serde_json would keep the last silently).
struct StrictJson(Value);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor { depth: 0 })
            .map(StrictJson)
    }
}

/// Checks the keys of the top-level object (an event) or of the objects of
/// the top-level array (a batch's events); deeper values (an event's `data`)
/// are kept as parsed.
#[derive(Clone, Copy)]
struct StrictVisitor {
    depth: u8,
}

impl<'de> serde::de::DeserializeSeed<'de> for StrictVisitor {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth >= 1 {
            serde::Deserialize::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let inner = StrictVisitor {
            depth: self.depth + 1,
        };
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE_KEY}{key}")));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        // Events of a batch sit at the same depth as a single event.
        while let Some(v) = seq.next_element_seed(StrictVisitor { depth: self.depth })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Parses a binary-mode event: attributes in `ce-*` headers (given as
/// lower-case name/value pairs), `content-type` as `datacontenttype`, the
/// body as data.
pub fn parse_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: Vec<u8>,
) -> Result<Event, CloudEventError> {
    let mut event = Event {
        data: body,
        attempt: 1,
        ..Event::default()
    };
    let mut version = None;
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if (name == "content-type" || name.starts_with("ce-")) && !seen.insert(name.clone()) {
            let attr = name.strip_prefix("ce-").unwrap_or("datacontenttype");
            return Err(CloudEventError::Duplicate(attr.to_string()));
        }
        if name == "content-type" {
            event.datacontenttype = Some(value.to_string());
            continue;
        }
        let Some(attr) = name.strip_prefix("ce-") else {
            continue;
        };
        let value = percent_decode(value);
        match attr {
            "specversion" => version = Some(value),
            "id" => event.id = value,
            "source" => event.source = value,
            "type" => event.ty = value,
            "subject" => event.subject = Some(value),
            "time" => event.time = Some(value),
            other => {
                check_extension_name(other)?;
                event.extensions.push((other.to_string(), value));
            }
        }
    }
    match version.as_deref() {
        None => return Err(CloudEventError::Missing("specversion")),
        Some("1.0") => {}
        Some(other) => return Err(CloudEventError::Version(format!("\"{other}\""))),
    }
    if event
        .datacontenttype
        .as_deref()
        .is_some_and(|c| c.contains("json"))
        && !event.data.is_empty()
        && serde_json::from_slice::<serde::de::IgnoredAny>(&event.data).is_err()
    {
        return Err(CloudEventError::Invalid {
            name: "data".into(),
            why: "the body is declared JSON but is not valid UTF-8 JSON".into(),
        });
    }
    finish(event)
}

fn from_json(value: Value) -> Result<Event, CloudEventError> {
    let Value::Object(mut map) = value else {
        return Err(CloudEventError::Shape(
            "a structured event is a JSON object".into(),
        ));
    };
    match map.get("specversion") {
        None => return Err(CloudEventError::Missing("specversion")),
        Some(Value::String(v)) if v == "1.0" => {}
        Some(other) => return Err(CloudEventError::Version(other.to_string())),
    }
    let text = |map: &mut Map<String, Value>,
                name: &'static str|
     -> Result<Option<String>, CloudEventError> {
        match map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(CloudEventError::Invalid {
                name: name.into(),
                why: format!("expected a string, got {other}"),
            }),
        }
    };
    let mut event = Event {
        id: text(&mut map, "id")?.unwrap_or_default(),
        source: text(&mut map, "source")?.unwrap_or_default(),
        ty: text(&mut map, "type")?.unwrap_or_default(),
        subject: text(&mut map, "subject")?,
        time: text(&mut map, "time")?,
        datacontenttype: text(&mut map, "datacontenttype")?,
        attempt: 1,
        ..Event::default()
    };
    match (map.remove("data"), text(&mut map, "data_base64")?) {
        (Some(_), Some(_)) => {
            return Err(CloudEventError::Invalid {
                name: "data".into(),
                why: "`data` and `data_base64` are mutually exclusive".into(),
            });
        }
        (Some(Value::String(s)), None) if !is_json(event.datacontenttype.as_deref()) => {
            event.data = s.into_bytes();
        }
        (Some(Value::Null), None) | (None, None) => {}
        (Some(value), None) => {
            event.data = value.to_string().into_bytes();
            event
                .datacontenttype
                .get_or_insert_with(|| "application/json".into());
        }
        (None, Some(b64)) => {
            event.data = base64_decode(&b64).ok_or_else(|| CloudEventError::Invalid {
                name: "data_base64".into(),
                why: "not valid base64".into(),
            })?;
        }
    }
    map.remove("specversion");
    for (name, value) in map {
        check_extension_name(&name)?;
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(CloudEventError::Invalid {
                    name,
                    why: format!("extension values are strings, numbers or booleans, not {other}"),
                });
            }
        };
        event.extensions.push((name, value));
    }
    finish(event)
}

fn finish(mut event: Event) -> Result<Event, CloudEventError> {
    for (name, value) in [
        ("id", &event.id),
        ("source", &event.source),
        ("type", &event.ty),
    ] {
        if value.is_empty() {
            return Err(CloudEventError::Missing(name));
        }
    }
    if let Some(time) = &event.time
        && !crate::time::is_rfc3339(time)
    {
        return Err(CloudEventError::Invalid {
            name: "time".into(),
            why: format!("`{time}` is not an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00Z)"),
        });
    }
    event.extensions.sort();
    event.ensure_traceparent();
    Ok(event)
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|c| c.contains("json"))
}

fn check_extension_name(name: &str) -> Result<(), CloudEventError> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !CORE.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(CloudEventError::Invalid {
            name: name.to_string(),
            why: "extension names are 1-20 lowercase letters or digits".into(),
        })
    }
}

/// Queue metadata carrying an event's attributes (`ce-*`, `content-type`).
pub fn to_metadata(event: &Event) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("ce-specversion".into(), "1.0".into());
    m.insert("ce-id".into(), event.id.clone());
    m.insert("ce-source".into(), event.source.clone());
    m.insert("ce-type".into(), event.ty.clone());
    if let Some(s) = &event.subject {
        m.insert("ce-subject".into(), s.clone());
    }
    if let Some(t) = &event.time {
        m.insert("ce-time".into(), t.clone());
    }
    if let Some(c) = &event.datacontenttype {
        m.insert("content-type".into(), c.clone());
    }
    for (k, v) in &event.extensions {
        m.insert(format!("ce-{k}"), v.clone());
    }
    m
}

/// The event stored by [`to_metadata`], if these metadata hold one.
pub fn from_metadata(
    metadata: &BTreeMap<String, String>,
    data: Vec<u8>,
    attempt: u32,
) -> Option<Event> {
    let get = |k: &str| metadata.get(k).cloned();
    let mut event = Event {
        id: get("ce-id")?,
        source: get("ce-source")?,
        ty: get("ce-type")?,
        subject: get("ce-subject"),
        time: get("ce-time"),
        datacontenttype: get("content-type"),
        data,
        attempt,
        extensions: Vec::new(),
    };
    for (k, v) in metadata {
        if let Some(name) = k.strip_prefix("ce-")
            && !matches!(
                name,
                "specversion" | "id" | "source" | "type" | "subject" | "time"
            )
        {
            event.extensions.push((name.to_string(), v.clone()));
        }
    }
    event.ensure_traceparent();
    Some(event)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_with_json_data_and_extensions() {
        let e = parse_structured(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t.created","subject":"a/b",
                "data":{"x":1},"tenant":"acme","priority":3}"#,
        )
        .unwrap();
        assert_eq!(
            (e.id.as_str(), e.source.as_str(), e.ty.as_str()),
            ("1", "/s", "t.created")
        );
        assert_eq!(e.data, br#"{"x":1}"#);
        assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(e.extension("tenant"), Some("acme"));
        assert_eq!(e.extension("priority"), Some("3"));
        assert!(e.extension("traceparent").is_some());
    }

    #[test]
    fn structured_text_and_base64_data() {
        let e = parse_structured(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"hi"}"#).unwrap();
        assert_eq!(e.data, b"hi");
        let e = parse_structured(
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"aGVsbG8="}"#,
        )
        .unwrap();
        assert_eq!(e.data, b"hello");
    }

    #[test]
    fn malformed_events_say_why() {
        assert!(matches!(
            parse_structured(b"{"),
            Err(CloudEventError::NotJson(_))
        ));
        assert_eq!(
            parse_structured(br#"{"specversion":"1.0","source":"s","type":"t"}"#),
            Err(CloudEventError::Missing("id"))
        );
        assert!(matches!(
            parse_structured(br#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#),
            Err(CloudEventError::Version(_))
        ));
        assert!(matches!(
            parse_structured(
                br#"{"specversion":"1.0","id":"1","source":"s","type":"t","Bad-Name":"x"}"#
            ),
            Err(CloudEventError::Invalid { .. })
        ));
        assert!(matches!(
            parse_batch(br#"{"a":1}"#),
            Err(CloudEventError::Shape(_))
        ));
    }

    #[test]
    fn binary_mode_and_batches() {
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", "9"),
            ("ce-source", "/dev"),
            ("ce-type", "t"),
            ("ce-subject", "a%20b"),
            ("ce-tenant", "acme"),
            ("content-type", "text/plain"),
            ("x-other", "ignored"),
        ];
        let e = parse_binary(headers, b"body".to_vec()).unwrap();
        assert_eq!(e.subject.as_deref(), Some("a b"));
        assert_eq!(e.extension("tenant"), Some("acme"));
        assert_eq!(e.datacontenttype.as_deref(), Some("text/plain"));
        assert_eq!(
            parse_binary([("ce-id", "1")], vec![]),
            Err(CloudEventError::Missing("specversion"))
        );
        let batch = parse_batch(
            br#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"specversion":"1.0","id":"2","source":"s","type":"t"}]"#,
        )
        .unwrap();
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn what_the_spec_refuses_is_refused() {
        let e =
            parse_structured(br#"{"specversion":"1.0","id":"1","id":"2","source":"s","type":"t"}"#);
        assert_eq!(e, Err(CloudEventError::Duplicate("id".into())));
        let e =
            parse_batch(br#"[{"specversion":"1.0","id":"1","source":"s","type":"t","type":"u"}]"#);
        assert_eq!(e, Err(CloudEventError::Duplicate("type".into())));
        // Duplicate keys inside `data` are the payload's business.
        parse_structured(
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":1,"a":2}}"#,
        )
        .unwrap();
        let e = parse_structured(
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}"#,
        );
        assert!(
            matches!(e, Err(CloudEventError::Invalid { ref name, .. }) if name == "time"),
            "{e:?}"
        );
        let base = [
            ("ce-specversion", "1.0"),
            ("ce-id", "9"),
            ("ce-source", "/dev"),
            ("ce-type", "t"),
        ];
        let with = |extra: &[(&'static str, &'static str)], body: &[u8]| {
            parse_binary(base.iter().chain(extra).copied(), body.to_vec())
        };
        assert!(matches!(
            with(&[("ce-time", "not-a-time")], b""),
            Err(CloudEventError::Invalid { .. })
        ));
        assert_eq!(
            with(&[("ce-id", "10")], b""),
            Err(CloudEventError::Duplicate("id".into()))
        );
        assert!(matches!(
            with(&[("content-type", "application/json")], b"\xff\xfe"),
            Err(CloudEventError::Invalid { ref name, .. }) if name == "data"
        ));
        with(&[("content-type", "application/json")], br#"{"ok":true}"#).unwrap();
        with(&[("content-type", "application/octet-stream")], b"\xff").unwrap();
        with(&[("ce-time", "2026-12-03T10:00:00.5+01:00")], b"").unwrap();
    }

    #[test]
    fn metadata_round_trip() {
        let mut e = parse_structured(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"x","tenant":"acme"}"#).unwrap();
        e.attempt = 1;
        let m = to_metadata(&e);
        let back = from_metadata(&m, e.data.clone(), 1).unwrap();
        assert_eq!(back, e);
        assert!(from_metadata(&BTreeMap::new(), vec![], 1).is_none());
    }
}
