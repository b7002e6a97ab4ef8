//! `Last-Event-ID`: how an event id is written on a stream's `id:` line,
//! and how the id a reconnecting client sends back is read.
//!
//! A browser's `EventSource` keeps the value of the last `id:` line (after
//! one leading space) and sends it back, as UTF-8, in the `Last-Event-ID`
//! header of its next connection. So that every event id survives that
//! trip and points at the same event again:
//! - [`wire`] writes the id with each control character replaced by a
//!   space (CR and LF would end the line, NUL makes a client ignore the
//!   field, and the others are refused in an HTTP header);
//! - [`LastEventId::from_headers`] reads the header's bytes as UTF-8 (not
//!   only ASCII, as [`http::HeaderValue::to_str`] would);
//! - [`LastEventId::is`] compares with an event id ignoring the spaces and
//!   tabs around it, which HTTP drops from header values.
//!
//! A header that cannot name an event (not UTF-8, or sent twice) is a
//! [`LastEventIdError`]. The stream then replays every recent event, as it
//! does for an id it does not know (expired, or never sent): a client may
//! see an event twice but misses none. Reading is linear in the header's
//! length, whose size the listener already bounds.

use std::borrow::Cow;

use http::HeaderMap;

/// The header a reconnecting client sends.
pub const HEADER: &str = "last-event-id";

/// `id` as written on an `id:` line: control characters become spaces.
pub fn wire(id: &str) -> Cow<'_, str> {
    if id.chars().any(char::is_control) {
        Cow::Owned(
            id.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(id)
    }
}

/// What a client's `Last-Event-ID` is compared on: [`wire`] without the
/// spaces and tabs around it.
fn key(id: &str) -> Cow<'_, str> {
    match wire(id) {
        Cow::Borrowed(s) => Cow::Borrowed(trim(s)),
        Cow::Owned(s) => Cow::Owned(trim(&s).to_string()),
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// The event a reconnecting client saw last, as it named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEventId(String);

/// Why a `Last-Event-ID` header names no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LastEventIdError {
    /// The value is not UTF-8 text.
    #[error(
        "Last-Event-ID is not UTF-8 text (invalid byte at offset {at}), so it names no event: every recent event is sent again"
    )]
    NotUtf8 {
        /// Offset of the first byte that is not UTF-8.
        at: usize,
    },
    /// The header came more than once.
    #[error(
        "Last-Event-ID was sent {count} times, so it names no one event: every recent event is sent again"
    )]
    Repeated {
        /// How many `Last-Event-ID` headers came.
        count: usize,
    },
}

impl LastEventId {
    /// Reads a `Last-Event-ID` value (the header's bytes, as received).
    pub fn parse(raw: &[u8]) -> Result<Self, LastEventIdError> {
        let text = std::str::from_utf8(raw).map_err(|e| LastEventIdError::NotUtf8 {
            at: e.valid_up_to(),
        })?;
        Ok(Self(trim(text).to_string()))
    }

    /// The `Last-Event-ID` of a request: `None` without one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, LastEventIdError> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        let more = values.count();
        if more > 0 {
            return Err(LastEventIdError::Repeated { count: more + 1 });
        }
        Self::parse(first.as_bytes()).map(Some)
    }

    /// Whether this names the event with id `event_id`.
    pub fn is(&self, event_id: &str) -> bool {
        key(event_id) == self.0
    }

    /// The id as the client sent it, without surrounding spaces and tabs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn plain_ids_are_written_and_read_as_they_are() {
        assert_eq!(wire("order-17"), "order-17");
        assert!(matches!(wire("order-17"), Cow::Borrowed(_)));
        let last = LastEventId::parse(b"order-17").unwrap();
        assert!(last.is("order-17"));
        assert!(!last.is("order-1"));
    }

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(wire("a\nb\r\0c\u{7f}d\u{85}e"), "a b  c d e");
        assert!(LastEventId::parse(b"a b").unwrap().is("a\nb"));
    }

    #[test]
    fn utf8_ids_and_surrounding_spaces_match() {
        let last = LastEventId::parse("  caf\u{e9} \u{1f600}\t".as_bytes()).unwrap();
        assert_eq!(last.as_str(), "caf\u{e9} \u{1f600}");
        assert!(last.is(" caf\u{e9} \u{1f600}\n"));
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(
            LastEventId::parse(b"ab\xffcd"),
            Err(LastEventIdError::NotUtf8 { at: 2 })
        );
        let mut headers = HeaderMap::new();
        assert_eq!(LastEventId::from_headers(&headers), Ok(None));
        headers.append(HEADER, HeaderValue::from_static("1"));
        assert!(
            LastEventId::from_headers(&headers)
                .unwrap()
                .unwrap()
                .is("1")
        );
        headers.append(HEADER, HeaderValue::from_static("2"));
        let e = LastEventId::from_headers(&headers).unwrap_err();
        assert_eq!(e, LastEventIdError::Repeated { count: 2 });
        assert!(e.to_string().contains("sent 2 times"), "{e}");
    }

    /// Property tests: any header parses without panicking, and every id
    /// the server writes, read back as a browser and HTTP pass it, names
    /// the same event. Cases: 256, or `PROPTEST_CASES`.
    mod props {
        use super::super::super::{SseHub, frame};
        use super::*;
        use gust_events::Event;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256);
            ProptestConfig::with_cases(cases)
        }

        /// Characters that stress the trip: line ends, NUL, whitespace,
        /// other controls, multi-byte text, and plain ASCII.
        fn id_char() -> impl Strategy<Value = char> {
            prop_oneof![
                4 => proptest::char::range('a', 'z'),
                1 => Just('\n'),
                1 => Just('\r'),
                1 => Just('\0'),
                1 => Just(' '),
                1 => Just('\t'),
                1 => Just('\u{7f}'),
                1 => Just('\u{feff}'),
                1 => Just(':'),
                2 => any::<char>(),
            ]
        }

        fn event_id() -> impl Strategy<Value = String> {
            prop::collection::vec(id_char(), 1..12).prop_map(String::from_iter)
        }

        /// The `id:` value a browser's EventSource keeps after reading
        /// `frame` (HTML, "interpreting an event stream"): lines end at
        /// CRLF, LF or CR; the field name ends at the first `:`; one space
        /// after it is dropped; a value holding NUL is ignored.
        fn browser_last_id(frame: &str) -> Option<String> {
            let mut last = None;
            for line in frame.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                if field == "id" && !value.contains('\0') {
                    last = Some(value.to_string());
                }
            }
            last
        }

        /// The header value the server receives for `id`: the browser
        /// sends it as UTF-8 unless it is empty; it must be a valid header
        /// value; the HTTP parser drops the spaces and tabs around it.
        fn as_received(id: &str) -> Option<Vec<u8>> {
            if id.is_empty() {
                return None;
            }
            let value = HeaderValue::from_bytes(id.as_bytes()).ok()?;
            Some(
                trim(std::str::from_utf8(value.as_bytes()).ok()?)
                    .as_bytes()
                    .to_vec(),
            )
        }

        proptest! {
            #![proptest_config(config())]

            /// Any bytes: an id, or a clear error exactly when they are not
            /// UTF-8; comparing never panics.
            #[test]
            fn any_header_parses_or_is_refused(
                raw in prop::collection::vec(any::<u8>(), 0..256),
                other in event_id(),
            ) {
                match LastEventId::parse(&raw) {
                    Ok(last) => {
                        prop_assert!(std::str::from_utf8(&raw).is_ok());
                        let _ = last.is(&other);
                        prop_assert!(last.is(last.as_str()) || last.as_str().chars().any(char::is_control));
                    }
                    Err(LastEventIdError::NotUtf8 { at }) => {
                        prop_assert_eq!(std::str::from_utf8(&raw).unwrap_err().valid_up_to(), at);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }

            /// Every id the server writes, read back as a browser keeps it
            /// and HTTP delivers it, resumes the stream right after its
            /// event.
            #[test]
            fn written_ids_resume_after_their_event(
                ids in prop::collection::vec(event_id(), 1..=32),
                pick in any::<prop::sample::Index>(),
            ) {
                // Ids that read back alike name the first of them; keep
                // one of each.
                let mut seen = std::collections::HashSet::new();
                let ids: Vec<String> = ids
                    .into_iter()
                    .filter(|id| seen.insert(key(id).into_owned()))
                    .collect();
                let events: Vec<Event> = ids
                    .iter()
                    .map(|id| {
                        let mut e = Event::new("/props", "t", b"d".to_vec());
                        e.id = id.clone();
                        e
                    })
                    .collect();
                let k = pick.index(events.len());
                let written = frame(&events[k]);
                let kept = browser_last_id(&written);
                prop_assert!(kept.is_some(), "the browser kept no id from {written:?}");
                let kept = kept.unwrap();
                prop_assert_eq!(&kept, &wire(&ids[k]).into_owned());
                let Some(received) = as_received(&kept) else {
                    return Err(TestCaseError::fail(format!("{kept:?} cannot be sent back")));
                };
                let last = LastEventId::parse(&received).unwrap();
                let position = events.iter().position(|e| last.is(&e.id));
                prop_assert_eq!(position, Some(k));

                let hub = SseHub::new();
                hub.watch_topics(["t"]);
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                runtime.block_on(hub.publish("t", &events));
                let sub = hub.subscribe("t", None, Some(&last));
                let replayed: Vec<&str> = sub.replay.iter().map(|e| e.id.as_str()).collect();
                let expected: Vec<&str> = ids[k + 1..].iter().map(String::as_str).collect();
                prop_assert_eq!(replayed, expected);
            }
        }
    }
}
