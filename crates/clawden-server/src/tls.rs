//! TLS with rustls: TLS 1.3 and 1.2 only, from given PEM files or a self-signed certificate
//! generated once and kept in the data dir.

use crate::settings::Settings;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("TLS file {0}: {1}")]
    Io(String, std::io::Error),
    /// The PEM held no usable certificate or key.
    #[error("TLS: {0}")]
    Invalid(String),
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Io(path.display().to_string(), e))
}

/// The rustls server configuration for the settings, or `None` for plain HTTP.
pub fn server_config(settings: &Settings) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let (cert_pem, key_pem) = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => (read_pem(cert)?, read_pem(key)?),
        _ if settings.tls_self_signed => self_signed(&settings.data_dir.join("tls"), settings)?,
        _ => return Ok(None),
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid("no certificate in the PEM file".into()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Invalid(format!("private key: {e}")))?
        .ok_or_else(|| TlsError::Invalid("no private key in the PEM file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn self_signed(dir: &Path, settings: &Settings) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((read_pem(&cert_path)?, read_pem(&key_path)?));
    }
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Io(dir.display().to_string(), e))?;
    let mut names = vec!["localhost".to_owned()];
    let ip = settings.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Invalid(e.to_string()))?;
    let cert = certified.cert.pem().into_bytes();
    let key = zeroize::Zeroizing::new(certified.key_pair.serialize_pem().into_bytes());
    let write = |path: &Path, bytes: &[u8], mode: u32| -> Result<(), TlsError> {
        let io = |e| TlsError::Io(path.display().to_string(), e);
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).map_err(io)?;
        f.write_all(bytes).map_err(io)
    };
    write(&key_path, &key, 0o600)?;
    write(&cert_path, &cert, 0o644)?;
    Ok((cert, key.to_vec()))
}
