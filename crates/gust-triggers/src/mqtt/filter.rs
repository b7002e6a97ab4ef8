//! MQTT topic filters: validation and wildcard matching (MQTT 3.1.1 §4.7).

use super::MqttError;

/// Checks that `filter` is a valid MQTT topic filter: not empty, `#` only as
/// the whole last level, `+` only as a whole level, no NUL character.
pub fn validate_filter(filter: &str) -> Result<(), MqttError> {
    let bad = |why: &str| {
        Err(MqttError::Filter {
            filter: filter.to_string(),
            why: why.to_string(),
        })
    };
    if filter.is_empty() {
        return bad("a topic filter is at least one character long");
    }
    if filter.contains('\0') {
        return bad("a topic filter must not contain the NUL character");
    }
    if filter.len() > 65_535 {
        return bad("a topic filter is at most 65535 bytes");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return bad("`#` must be a whole level and the last one, as in `devices/#`");
        }
        if level.contains('+') && *level != "+" {
            return bad("`+` must be a whole level, as in `devices/+/telemetry`");
        }
    }
    Ok(())
}

/// Whether `topic` (a concrete topic name) matches `filter`.
///
/// `+` matches exactly one level (which may be empty), `#` matches the
/// parent level and any number of levels below it, and a filter starting
/// with a wildcard does not match topics starting with `$` (such as
/// `$SYS/...`). An invalid filter matches nothing.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if validate_filter(filter).is_err() || topic.contains(['+', '#']) {
        return false;
    }
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut want = filter.split('/');
    let mut have = topic.split('/');
    loop {
        match (want.next(), have.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(w), Some(h)) if w == h => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The functions whose filter matches `topic`, in the order given, from
/// `(function, filter)` pairs.
pub fn matching_functions<'a>(
    functions: impl IntoIterator<Item = (&'a str, &'a str)>,
    topic: &str,
) -> Vec<&'a str> {
    functions
        .into_iter()
        .filter(|(_, filter)| topic_matches(filter, topic))
        .map(|(function, _)| function)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_per_the_spec() {
        let yes = [
            ("devices/+/telemetry", "devices/d1/telemetry"),
            ("devices/+/telemetry", "devices//telemetry"),
            ("devices/#", "devices"),
            ("devices/#", "devices/d1"),
            ("devices/#", "devices/d1/telemetry/x"),
            ("#", "a/b/c"),
            ("+", "a"),
            ("+/+", "/a"),
            ("/+", "/a"),
            ("a/b", "a/b"),
            ("+/b/#", "a/b"),
            ("$SYS/#", "$SYS/broker"),
        ];
        for (f, t) in yes {
            assert!(topic_matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("devices/+/telemetry", "devices/d1/status"),
            ("devices/+/telemetry", "devices/d1/telemetry/x"),
            ("devices/+", "devices"),
            ("devices/#", "device"),
            ("a/b", "a/b/"),
            ("a/b", "A/b"),
            ("+", "a/b"),
            ("+", "/a"),
            ("#", "$SYS/broker"),
            ("+/broker", "$SYS/broker"),
            ("a/#/b", "a/x/b"),
            ("a/+", "a/+"),
        ];
        for (f, t) in no {
            assert!(!topic_matches(f, t), "{f} should not match {t}");
        }
    }

    #[test]
    fn bad_filters_say_why() {
        for f in ["", "a/#/b", "a/b#", "a+/b", "a/+b", "a\0b"] {
            let err = validate_filter(f).unwrap_err().to_string();
            assert!(err.contains("invalid MQTT topic filter"), "{err}");
        }
        for f in ["#", "+", "a/+/c", "a/#", "/", "a//b"] {
            validate_filter(f).unwrap();
        }
    }

    #[test]
    fn routes_a_topic_to_every_matching_function() {
        let fns = [
            ("telemetry", "devices/+/telemetry"),
            ("all", "devices/#"),
            ("one", "devices/d7/telemetry"),
            ("status", "devices/+/status"),
        ];
        assert_eq!(
            matching_functions(fns, "devices/d7/telemetry"),
            ["telemetry", "all", "one"]
        );
        assert_eq!(
            matching_functions(fns, "devices/d1/status"),
            ["all", "status"]
        );
        assert!(matching_functions(fns, "other/x").is_empty());
    }
}
