//! `application/x-www-form-urlencoded` decoding, used for query strings and for the
//! route parameters that the host passes in the `x-gust-params` header.

/// Decodes one urlencoded component: `+` becomes a space and `%XX` the byte `XX`.
///
/// Malformed escapes (`%` not followed by two hex digits) are kept literally and
/// invalid UTF-8 is replaced with U+FFFD, so decoding never fails.
pub fn decode(input: &str) -> String {
    if !input.contains(['%', '+']) {
        return input.to_owned();
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses `a=1&b=two%20words&flag` into decoded `(name, value)` pairs, in order.
///
/// Empty segments are skipped; a segment without `=` has an empty value.
pub fn parse(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(segment), String::new()),
        })
        .collect()
}

/// The value of the first pair called `name`, if any.
pub fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Encodes `input` for use as a name or value in a urlencoded string (the inverse
/// of [`decode`]): unreserved characters stay, a space becomes `+`, everything
/// else is percent-encoded.
pub fn encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(decode("caf%C3%A9"), "café");
        assert_eq!(decode("plain"), "plain");
        assert_eq!(decode("%2B%26%3d"), "+&=");
    }

    #[test]
    fn keeps_malformed_escapes() {
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%41%"), "A%");
    }

    #[test]
    fn replaces_invalid_utf8() {
        assert_eq!(decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn parses_pairs_in_order() {
        let pairs = parse("id=42&kind=a%20b&flag&&empty=&id=7");
        assert_eq!(
            pairs,
            vec![
                ("id".to_owned(), "42".to_owned()),
                ("kind".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
                ("empty".to_owned(), String::new()),
                ("id".to_owned(), "7".to_owned()),
            ]
        );
        assert_eq!(lookup(&pairs, "id"), Some("42"));
        assert_eq!(lookup(&pairs, "kind"), Some("a b"));
        assert_eq!(lookup(&pairs, "flag"), Some(""));
        assert_eq!(lookup(&pairs, "missing"), None);
    }

    #[test]
    fn value_may_contain_equals() {
        assert_eq!(parse("q=a=b"), vec![("q".to_owned(), "a=b".to_owned())]);
    }

    #[test]
    fn empty_input_has_no_pairs() {
        assert!(parse("").is_empty());
    }

    #[test]
    fn encode_roundtrips() {
        for s in ["a b", "x&y=z", "café/ü?", "100%", "plain-._~"] {
            assert_eq!(decode(&encode(s)), s);
        }
        assert_eq!(encode("a b&c"), "a+b%26c");
    }
}
