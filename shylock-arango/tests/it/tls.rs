//! Issue 23 item 7: ArangoDB over TLS with a private certificate authority.
//! The test makes a CA and a server certificate (`rcgen`), and puts an
//! HTTPS front (`tokio-rustls`) before the emulator.

use std::sync::Arc;

use shylock_arango::{ArangoBackend, ArangoOptions};
use shylock_core::BackendErrorKind;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::support::emulator::Emulator;
use crate::support::target::{EMU_DB, EMU_PASSWORD, EMU_USER};

/// A new CA (its PEM) and a server configuration with a certificate it
/// signed for `localhost`.
fn private_ca() -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "shylock test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), config)
}

/// An HTTPS front on a free loopback port that passes every connection on
/// to `upstream` (`host:port`): its URL.
async fn https_front(config: rustls::ServerConfig, upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    format!("https://localhost:{port}")
}

#[tokio::test]
async fn a_private_ca_is_trusted_when_given_and_a_config_error_when_not() {
    let emu = Emulator::start(EMU_USER, EMU_PASSWORD, &[EMU_DB]);
    let upstream = emu
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (ca_pem, config) = private_ca();
    let url = https_front(config, upstream).await;

    // Without the CA: a configuration error that names the certificate.
    let err =
        ArangoBackend::connect_with(&url, EMU_USER, EMU_PASSWORD, EMU_DB, ArangoOptions::new())
            .await
            .expect_err("a certificate of an unknown CA was accepted");
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::InvalidConfig),
        "{err}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // With it: connected.
    let options = ArangoOptions::new().ca_certificate(ca_pem.as_bytes());
    ArangoBackend::connect_with(&url, EMU_USER, EMU_PASSWORD, EMU_DB, options)
        .await
        .unwrap();

    // Bad PEM: refused before any request.
    let options = ArangoOptions::new().ca_certificate(&b"not a certificate"[..]);
    let err = ArangoBackend::connect_with(&url, EMU_USER, EMU_PASSWORD, EMU_DB, options)
        .await
        .expect_err("bad PEM");
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::InvalidConfig),
        "{err}"
    );
}
