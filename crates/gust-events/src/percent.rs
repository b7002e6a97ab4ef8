//! Percent-decoding (`%XX` escapes) of URL paths, query strings and header
//! values: lenient where a value is only read ([`percent_decode`]), strict
//! where it must be exact, such as a file path ([`percent_decode_strict`]).

/// Decodes `%XX` escapes (invalid escapes are kept as written, and bytes
/// that are not UTF-8 become U+FFFD).
pub fn percent_decode(s: &str) -> String {
    // Never `None`: malformed escapes are kept.
    let bytes = unescape(s, Malformed::Keep).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Decodes `%XX` escapes; `None` when one is malformed (`%` not followed
/// by two hex digits) or the result is not UTF-8.
pub fn percent_decode_strict(s: &str) -> Option<String> {
    String::from_utf8(unescape(s, Malformed::Refuse)?).ok()
}

/// What to do with a `%` that does not start an escape.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Malformed {
    Keep,
    Refuse,
}

/// The bytes `s` stands for; `None` when a malformed escape is refused.
fn unescape(s: &str, malformed: Malformed) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(byte) = bytes.get(i + 1..i + 3).and_then(hex_pair) {
                out.push(byte);
                i += 3;
                continue;
            }
            if malformed == Malformed::Refuse {
                return None;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(out)
}

/// The byte two hex digits spell.
fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn strict_refuses_invalid_escapes_and_bytes() {
        assert_eq!(percent_decode_strict("a%2fb%2E").as_deref(), Some("a/b."));
        assert_eq!(percent_decode_strict("%C3%A9").as_deref(), Some("é"));
        assert_eq!(
            percent_decode_strict("plain+text").as_deref(),
            Some("plain+text")
        );
        for bad in ["%", "a%4", "%zz", "%+5", "%ff", "%c3%28"] {
            assert_eq!(percent_decode_strict(bad), None, "{bad}");
        }
    }
}
