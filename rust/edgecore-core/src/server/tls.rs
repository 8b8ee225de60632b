//! TLS termination with rustls on aws-lc-rs.
//!
//! The certificate chain and private key are PEM files. They are read when the plan is compiled,
//! so a reload (SIGHUP or `Running.reload()`) picks up renewed files: connections accepted after
//! the swap get the new certificate, established ones keep theirs. ALPN offers `h2` then
//! `http/1.1`; the connection builder serves whichever the client chose.

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

use crate::error::{Error, Result};

/// Reads `cert_path` (PEM: the leaf certificate first, then intermediates) and `key_path`
/// (PEM: PKCS#8, PKCS#1 or SEC1) into a server configuration (an acceptor per connection is an
/// `Arc` clone of it). Every failure names the file and the problem.
pub fn server_config(cert_path: &str, key_path: &str) -> Result<Arc<ServerConfig>> {
    let read = |path: &str, what: &str| {
        std::fs::read(path).map_err(|e| Error::config(format!("cannot read the TLS {what} file {path:?}: {e}")))
    };
    let cert_pem = read(cert_path, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("TLS certificate file {cert_path:?} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "TLS certificate file {cert_path:?} holds no CERTIFICATE block"
        )));
    }
    let key_pem = read(key_path, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        Error::config(format!(
            "TLS key file {key_path:?} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"
        ))
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::config(format!(
                "TLS certificate {cert_path:?} and key {key_path:?} cannot be used together: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> String {
        let p = std::env::temp_dir().join(format!("edgecore-tls-{name}-{}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    }

    #[test]
    fn every_failure_names_the_file_and_the_problem() {
        let e = server_config("/nonexistent/cert.pem", "/nonexistent/key.pem")
            .err()
            .unwrap();
        assert!(
            e.context.contains("cannot read the TLS certificate file") && e.context.contains("/nonexistent/cert.pem")
        );
        let empty = write("empty", "no pem here\n");
        let e = server_config(&empty, &empty).err().unwrap();
        assert!(e.context.contains("holds no CERTIFICATE block"), "{e}");
        let junk = write("junk", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        let e = server_config(&junk, &empty).err().unwrap();
        assert!(e.context.contains("is not valid PEM"), "{e}");
        let cert = write("cert", "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n");
        let e = server_config(&cert, &empty).err().unwrap();
        assert!(e.context.contains("holds no usable private key"), "{e}");
        for p in [empty, junk, cert] {
            std::fs::remove_file(p).unwrap();
        }
    }
}
