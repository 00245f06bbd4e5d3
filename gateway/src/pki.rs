//! Certificates and TLS errors, shared by every client the gateway builds (upstreams,
//! the JWKS fetcher, the AWS bridge): CA bundles loaded the same way, and TLS failures
//! described the same way.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::error::Error as StdError;
use std::path::Path;

/// The certificates of a PEM file; `what` names the setting in errors (`ca_bundle`).
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} `{file}`: {}", pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} `{file}`: {}", pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(format!("{what} `{file}` holds no PEM certificate"));
    }
    Ok(certs)
}

/// A trust store holding only the CA bundle at `path`.
pub fn load_roots(path: &Path, what: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in load_certs(path, what)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            format!(
                "{what} `{}`: certificate {} is not usable as a CA: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(roots)
}

/// A client TLS config (ring, safe defaults) trusting only `roots`, without a client
/// certificate.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A PEM error in words, without echoing file contents (a key file may be involved).
pub fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("cannot read it: {io}"),
        E::NoItemsFound => "no PEM item of the expected kind found".into(),
        E::MissingSectionEnd { .. } | E::IllegalSectionStart { .. } => {
            "malformed PEM section".into()
        }
        E::Base64Decode(_) => "malformed base64 in PEM".into(),
        _ => "malformed PEM".into(),
    }
}

/// Every error in `e`'s chain, looking inside `io::Error`s too: `io::Error::source`
/// skips the error it wraps, which is where hyper-rustls puts the rustls error.
pub fn error_chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(cur) = stack.pop() {
        // Bounded: error chains are short, but a cyclic `source` must not loop forever.
        if out.len() >= 32 {
            break;
        }
        out.push(cur);
        if let Some(next) = cur.source() {
            stack.push(next);
        }
        if let Some(inner) = cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            stack.push(inner);
        }
    }
    out
}

/// The chain as one line, each piece once (wrappers often repeat their cause).
pub fn error_text(e: &(dyn StdError + 'static)) -> String {
    let mut pieces: Vec<String> = Vec::new();
    for cur in error_chain(e) {
        let text = cur.to_string();
        if !pieces.iter().any(|p| p.contains(&text)) {
            pieces.push(text);
        }
    }
    pieces.join(": ")
}
