//! Where spans go and how many: from the flags, node.toml or the standard
//! OpenTelemetry environment variables.

use std::fmt;

/// Trace export settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// The full URL spans are POSTed to (`<endpoint>/v1/traces`).
    pub traces_url: String,
    /// The share of new traces sampled (0..=1); a trace continued from a
    /// `traceparent` follows the caller's decision.
    pub sample: f64,
}

/// A trace setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfigError(String);

impl fmt::Display for TraceConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceConfigError {}

impl TraceConfig {
    /// Settings from `endpoint` and `sample` (a flag, else node.toml), else
    /// from the environment (`OTEL_EXPORTER_OTLP_ENDPOINT`, or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as the full URL;
    /// `OTEL_TRACES_SAMPLER_ARG`). `None`: no endpoint, no export.
    pub fn resolve(
        endpoint: Option<&str>,
        sample: Option<f64>,
    ) -> Result<Option<Self>, TraceConfigError> {
        Self::resolve_with(endpoint, sample, |name| std::env::var(name).ok())
    }

    /// [`Self::resolve`] reading variables through `env`.
    pub fn resolve_with(
        endpoint: Option<&str>,
        sample: Option<f64>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TraceConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let traces_url = match endpoint {
            Some(base) => traces_url(base, "--otlp-endpoint / otlp_endpoint")?,
            None => match (
                env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                env("OTEL_EXPORTER_OTLP_ENDPOINT"),
            ) {
                (Some(full), _) => {
                    check_url(&full, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?;
                    full.trim().to_string()
                }
                (None, Some(base)) => traces_url(&base, "OTEL_EXPORTER_OTLP_ENDPOINT")?,
                (None, None) => return Ok(None),
            },
        };
        let sample = match sample {
            Some(ratio) => check_ratio(ratio, "--trace-sample / trace_sample")?,
            None => match env("OTEL_TRACES_SAMPLER_ARG") {
                Some(text) => {
                    let ratio = text.trim().parse::<f64>().map_err(|_| {
                        TraceConfigError(format!(
                            "OTEL_TRACES_SAMPLER_ARG = `{text}` is not a number; give a ratio from 0 to 1, e.g. 0.01"
                        ))
                    })?;
                    check_ratio(ratio, "OTEL_TRACES_SAMPLER_ARG")?
                }
                None => 1.0,
            },
        };
        Ok(Some(Self { traces_url, sample }))
    }
}

/// `<base>/v1/traces`, as the OTLP/HTTP specification builds it.
fn traces_url(base: &str, what: &str) -> Result<String, TraceConfigError> {
    let base = base.trim();
    check_url(base, what)?;
    Ok(format!("{}/v1/traces", base.trim_end_matches('/')))
}

fn check_url(url: &str, what: &str) -> Result<(), TraceConfigError> {
    let uri: http::Uri = url.trim().parse().map_err(|e| {
        TraceConfigError(format!(
            "{what}: `{url}` is not a URL ({e}); e.g. http://127.0.0.1:4318"
        ))
    })?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.authority().is_none() {
        return Err(TraceConfigError(format!(
            "{what}: `{url}` must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318"
        )));
    }
    Ok(())
}

fn check_ratio(ratio: f64, what: &str) -> Result<f64, TraceConfigError> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(TraceConfigError(format!(
            "{what}: {ratio} is not a ratio from 0 to 1 (e.g. 0.01 samples 1% of new traces)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ]);
        let c = TraceConfig::resolve_with(Some("http://flag:4318/"), Some(0.01), &vars)
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "http://flag:4318/v1/traces");
        assert_eq!(c.sample, 0.01);
        let c = TraceConfig::resolve_with(None, None, &vars)
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "http://env:4318/v1/traces");
        assert_eq!(c.sample, 0.5);
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let vars = env(&[("OTEL_TRACES_SAMPLER_ARG", "0.5")]);
        assert_eq!(TraceConfig::resolve_with(None, None, &vars), Ok(None));
        let vars = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]);
        assert_eq!(TraceConfig::resolve_with(None, Some(1.0), &vars), Ok(None));
    }

    #[test]
    fn the_traces_endpoint_is_used_as_given_and_the_sample_defaults_to_all() {
        let vars = env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://collector/custom/path",
        )]);
        let c = TraceConfig::resolve_with(None, None, &vars)
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "https://collector/custom/path");
        assert_eq!(c.sample, 1.0);
    }

    #[test]
    fn bad_settings_say_what_to_write() {
        let none = env(&[]);
        for (endpoint, sample) in [
            (Some("collector:4318"), None),
            (Some("ftp://collector"), None),
            (Some("http://c:4318"), Some(1.5)),
            (Some("http://c:4318"), Some(-0.1)),
            (Some("http://c:4318"), Some(f64::NAN)),
        ] {
            let e = TraceConfig::resolve_with(endpoint, sample, &none).unwrap_err();
            assert!(e.to_string().contains("e.g."), "{e}");
        }
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_SAMPLER_ARG", "most"),
        ]);
        let e = TraceConfig::resolve_with(None, None, &vars).unwrap_err();
        assert!(e.to_string().contains("OTEL_TRACES_SAMPLER_ARG"), "{e}");
    }
}
