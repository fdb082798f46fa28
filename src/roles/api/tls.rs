//! HTTPS for the API and admin listeners: the certificate chain and key of `http.tls`, served
//! with rustls over ring.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("http.tls.cert: cannot read a certificate chain from {path}: {message}")]
    Cert { path: String, message: String },
    #[error("http.tls.key: cannot read a private key from {path}: {message}")]
    Key { path: String, message: String },
    #[error("http.tls: {0}")]
    Config(#[from] rustls::Error),
}

pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_error = |message: String| TlsError::Cert {
        path: cert.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|err| cert_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_error(err.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|err| TlsError::Key {
        path: key.display().to_string(),
        message: err.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, private)?;
    Ok(config)
}
