//! gRPC over TLS when a certificate is configured.

use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::helpers::*;

#[tokio::test]
async fn with_a_certificate_the_service_speaks_tls_only() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("order-grpc-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    let app = spawn_app_with(Options {
        tls: Some((cert.clone(), key)),
        ..Options::default()
    })
    .await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(certified.cert.pem()))
        .domain_name("localhost");
    let secure = Channel::from_shared(format!("https://localhost:{}", app.grpc_addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = order_proto::v1::order_service_client::OrderServiceClient::new(secure);
    // The database may still be warming up the readiness check; a command works regardless.
    let placed = client.place_order(place(&id())).await.unwrap().into_inner();
    assert_eq!(placed.version, 1);

    let plaintext = app.commands().place_order(place(&id())).await;
    assert!(plaintext.is_err(), "a plaintext client is not served");
    let _ = std::fs::remove_dir_all(dir);
}
