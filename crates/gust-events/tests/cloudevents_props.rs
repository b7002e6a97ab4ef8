//! Property tests: the CloudEvents parsers (structured, batch, binary) take
//! any input without panicking, answer in bounded time, and what they
//! accept has the required attributes. Cases per property: 256, or
//! `PROPTEST_CASES` for a longer run (see bench/README.md).

use gust_events::{parse_batch, parse_binary, parse_structured};
use proptest::prelude::*;

fn attribute_json() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("specversion".to_string()),
        Just("id".to_string()),
        Just("source".to_string()),
        Just("type".to_string()),
        Just("time".to_string()),
        Just("subject".to_string()),
        Just("data".to_string()),
        Just("data_base64".to_string()),
        Just("datacontenttype".to_string()),
        "[a-zA-Z0-9_-]{0,24}",
    ];
    let value = prop_oneof![
        Just("\"1.0\"".to_string()),
        Just("null".to_string()),
        Just("{\"a\":[1,2,{}]}".to_string()),
        "-?[0-9]{1,30}(\\.[0-9]{0,5})?",
        "\"[^\"\\\\]{0,40}\"",
        Just("\"2026-01-31T12:00:00Z\"".to_string()),
    ];
    (key, value).prop_map(|(k, v)| format!("\"{k}\":{v}"))
}

fn event_json() -> impl Strategy<Value = String> {
    prop::collection::vec(attribute_json(), 0..12).prop_map(|a| format!("{{{}}}", a.join(",")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn structured_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_structured(&body);
        let _ = parse_batch(&body);
    }

    #[test]
    fn structured_accepts_only_complete_events(body in event_json()) {
        if let Ok(e) = parse_structured(body.as_bytes()) {
            prop_assert!(!e.id.is_empty() && !e.source.is_empty() && !e.ty.is_empty());
        }
        let batch = format!("[{body},{body}]");
        if let Ok(events) = parse_batch(batch.as_bytes()) {
            prop_assert_eq!(events.len(), 2);
        }
    }

    #[test]
    fn binary_never_panics(
        headers in prop::collection::vec(("(ce-|content-)?[a-z]{0,12}", "[ -~]{0,40}"), 0..12),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Ok(e) = parse_binary(pairs, body) {
            prop_assert!(!e.id.is_empty() && !e.source.is_empty() && !e.ty.is_empty());
        }
    }
}
