//! TLS for the gateway's own connections — to the broker and to Redis —
//! built once from PEM files, so both speak TLS the same way and a bad file
//! fails start-up with its name instead of a handshake error later.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// Where a TLS client's trust and identity come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle (PEM) the server's certificate must chain to; `None`
    /// trusts the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and its key (PEM), for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// A rustls client configuration from these files. The server's name is
    /// checked against the host the connection is made to.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in certificates(path)? {
                    roots
                        .add(cert)
                        .map_err(|error| format!("{}: {error}", path.display()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err("no system CA certificates found: set ca_file".into());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots);
        match &self.client_auth {
            None => Ok(builder.with_no_client_auth()),
            Some((cert_file, key_file)) => {
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|error| format!("{}: no private key: {error}", key_file.display()))?;
                builder
                    .with_client_auth_cert(certificates(cert_file)?, key)
                    .map_err(|error| {
                        format!(
                            "{} and {}: {error}",
                            cert_file.display(),
                            key_file.display()
                        )
                    })
            }
        }
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// Why a TLS handshake was refused, when `error` or one of its sources says
/// so: the server's certificate did not verify, or the server refused ours
/// (missing, expired, unknown CA). Retrying cannot fix either, so a worker
/// stops at start-up with this message instead of retrying forever.
pub fn handshake_refusal(error: &(dyn Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refusal) = error.downcast_ref::<rustls::Error>().and_then(refusal) {
            return Some(refusal);
        }
        // io::Error keeps rustls' error as its inner error, not as a source.
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(refusal) = inner.and_then(refusal) {
            return Some(refusal);
        }
        current = error.source();
    }
    None
}

fn refusal(error: &rustls::Error) -> Option<String> {
    match error {
        rustls::Error::InvalidCertificate(why) => Some(format!(
            "the server's TLS certificate was refused ({why:?}): check ca_file and the host name"
        )),
        rustls::Error::AlertReceived(alert) => Some(format!(
            "the server refused the TLS handshake ({alert:?}): check the client certificate (cert_file, key_file) and that the server trusts its CA"
        )),
        _ => None,
    }
}

/// [`handshake_refusal`] for clients that keep only an error's text (fred
/// turns rustls' errors into strings): the text rustls gives those errors.
pub fn handshake_refusal_in(text: &str) -> Option<String> {
    if text.contains("invalid peer certificate") || text.contains("InvalidCertificate") {
        return Some(format!(
            "the server's TLS certificate was refused: check ca_file and the host name ({text})"
        ));
    }
    if text.contains("received fatal alert") || text.contains("AlertReceived") {
        return Some(format!(
            "the server refused the TLS handshake: check the client certificate (cert_file, key_file) ({text})"
        ));
    }
    None
}
