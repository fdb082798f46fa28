//! Connections with the `sslmode` of the URL honoured, TLS through rustls.
//!
//! diesel-async connects through tokio-postgres without TLS, and tokio-postgres knows only
//! `disable`, `prefer` and `require` (it checks no certificate itself). So the URL's `sslmode`
//! and `sslrootcert` are read here and the connection made with a rustls configuration that
//! does what libpq would: `require` encrypts without checking the server's certificate,
//! `verify-ca` and `verify-full` check it against `sslrootcert` (or the Mozilla roots) and the
//! host name (`verify-ca` is held to the stricter `verify-full`).

use std::path::PathBuf;
use std::sync::Arc;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Off,
    Encrypt,
    Verify(Option<PathBuf>),
}

/// The URL tokio-postgres is given and what TLS it needs.
fn split(url: &str) -> Result<(String, Mode), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Mode::Off));
    };
    let (mut sslmode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match form_urlencoded::parse(pair.as_bytes()).next() {
            Some((key, value)) if key == "sslmode" => sslmode = Some(value.into_owned()),
            Some((key, value)) if key == "sslrootcert" => {
                root = Some(PathBuf::from(value.into_owned()))
            }
            _ => kept.push(pair.to_owned()),
        }
    }
    let mode = match sslmode.as_deref() {
        None | Some("disable") => Mode::Off,
        // libpq's `allow` and `prefer` may fall back to plain text; here they encrypt or fail.
        // A root given with `require` is checked, as libpq does (`verify-ca`, held here to the
        // stricter `verify-full`).
        Some("allow" | "prefer" | "require") if root.is_some() => Mode::Verify(root),
        Some("allow" | "prefer" | "require") => Mode::Encrypt,
        Some("verify-ca" | "verify-full") => Mode::Verify(root),
        Some(other) => return Err(format!("storage.url: unknown sslmode {other:?}")),
    };
    if mode != Mode::Off {
        kept.push("sslmode=require".into());
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode))
}

/// Encrypts without checking who answers: what `sslmode=require` asks for. The handshake's
/// signatures are still checked, so the session is bound to the certificate presented.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(mode: &Mode) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?;
    Ok(match mode {
        Mode::Verify(root) => {
            let mut roots = rustls::RootCertStore::empty();
            match root {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|err| format!("sslrootcert {}: {err}", path.display()))?;
                    for cert in certs {
                        let cert =
                            cert.map_err(|err| format!("sslrootcert {}: {err}", path.display()))?;
                        roots.add(cert).map_err(|err| err.to_string())?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Mode::Encrypt | Mode::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    })
}

/// Opens a connection as the URL's `sslmode` says.
pub async fn establish(url: &str) -> ConnectionResult<AsyncPgConnection> {
    let (url, mode) = split(url).map_err(ConnectionError::BadConnection)?;
    if mode == Mode::Off {
        return AsyncPgConnection::establish(&url).await;
    }
    let config = client_config(&mode).map_err(ConnectionError::BadConnection)?;
    let (client, connection) =
        tokio_postgres::connect(&url, tokio_postgres_rustls::MakeRustlsConnect::new(config))
            .await
            .map_err(|err| ConnectionError::BadConnection(err.to_string()))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sslmode_is_read_and_handed_on_as_tokio_postgres_knows_it() {
        assert_eq!(
            split("postgres://h/db").unwrap(),
            ("postgres://h/db".into(), Mode::Off)
        );
        assert_eq!(
            split("postgres://h/db?sslmode=disable&application_name=x").unwrap(),
            ("postgres://h/db?application_name=x".into(), Mode::Off)
        );
        assert_eq!(
            split("postgres://h/db?sslmode=require").unwrap(),
            ("postgres://h/db?sslmode=require".into(), Mode::Encrypt)
        );
        assert_eq!(
            split("postgres://h/db?sslmode=verify-full&sslrootcert=%2Fca.pem").unwrap(),
            (
                "postgres://h/db?sslmode=require".into(),
                Mode::Verify(Some(PathBuf::from("/ca.pem")))
            )
        );
        assert_eq!(
            split("postgres://h/db?sslmode=verify-ca").unwrap().1,
            Mode::Verify(None)
        );
        assert_eq!(
            split("postgres://h/db?sslmode=require&sslrootcert=/ca.pem")
                .unwrap()
                .1,
            Mode::Verify(Some(PathBuf::from("/ca.pem")))
        );
        assert!(split("postgres://h/db?sslmode=sometimes").is_err());
    }
}
