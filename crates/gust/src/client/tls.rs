//! HTTPS for the admin client: rustls with the ring provider (the one the
//! rest of Gust uses, so no second TLS stack), trusting the system's root
//! certificates plus, when given, the CA certificates of a PEM file
//! (`--ca-cert FILE` or `GUST_CA_CERT`), e.g. the one that signed the
//! certificate of `gust up --tls-cert`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

/// The TLS settings for a host at `base`: for `https://`, the system's
/// roots plus those of `ca_cert`; else none (TLS is not expected there, and
/// a redirect to `https://` then fails instead of trusting anything).
pub fn config(base: &str, ca_cert: Option<&Path>) -> Result<TlsConfig> {
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    if is_https(base) {
        roots.extend(
            rustls_native_certs::load_native_certs()
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
        );
        if let Some(file) = ca_cert {
            roots.extend(read_ca_file(file)?);
        }
    }
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
}

/// Whether `url` is `https://...`.
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// The certificates of PEM file `file` (other PEM items are skipped).
fn read_ca_file(file: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(file)
        .with_context(|| format!("cannot read the CA file {} (--ca-cert)", file.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => bail!("the CA file {} is not valid PEM ({e})", file.display()),
        }
    }
    if certs.is_empty() {
        bail!(
            "the CA file {} holds no certificate (expected `-----BEGIN CERTIFICATE-----`)",
            file.display()
        );
    }
    Ok(certs)
}

/// The TLS failure inside `e`, if it is one.
fn rustls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref(),
        _ => None,
    }
}

/// A TLS handshake with the host failed: its certificate is not trusted,
/// or it does not speak TLS. Not a sign that the host is down.
#[derive(Debug)]
pub struct TlsFailure(String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// Explains `e` when the TLS handshake with `base` failed.
pub fn explain(base: &str, e: &ureq::Error, ca_cert: Option<&Path>) -> Option<TlsFailure> {
    let tls = rustls_error(e)?;
    let trusted = match ca_cert {
        Some(file) => format!("the system's roots and {}", file.display()),
        None => "the system's roots".to_string(),
    };
    Some(TlsFailure(match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            ..
        }) => format!(
            "the TLS certificate of {base} is not valid for that host name ({tls}): use a URL with a name or address the certificate lists"
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "the TLS certificate of {base} is not trusted ({tls}; trusted: {trusted}): pass --ca-cert FILE (or set GUST_CA_CERT) with the CA certificate that signed it"
        ),
        _ => format!(
            "TLS with {base} failed ({tls}); is the host serving HTTPS (`--tls-cert`)? If not, use an http:// URL"
        ),
    }))
}
