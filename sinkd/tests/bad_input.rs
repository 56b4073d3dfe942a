//! Bad input gets the right status with a reason, is counted, and crashes nothing.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use sinkd::SinkClient;
use sinkd::wire::Format;
use support::{TOKEN, event, sinkd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn reason(r: &sinkd::Reply) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["reason"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_kind_of_bad_request_gets_its_status_and_the_daemon_keeps_serving() {
    let (running, client) = sinkd(&["--max-body", "1KiB", "--admin-token", TOKEN]).await;
    let json = Some("application/json");

    let r = client
        .send(Method::POST, "/write", json, b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        reason(&r).await.contains("invalid JSON"),
        "{}",
        reason(&r).await
    );

    let r = client
        .send(Method::POST, "/write/batch", json, b"{\"id\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(reason(&r).await.contains("array"));

    let r = client
        .send(
            Method::POST,
            "/write/batch",
            Some(sinkd::wire::BINARY),
            vec![1, 2, 3],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(reason(&r).await.contains("truncated"));

    let r = client
        .send(Method::POST, "/write", json, vec![b' '; 4096])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    let r = client
        .send(
            Method::POST,
            "/write",
            Some("text/plain"),
            b"hello".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(reason(&r).await.contains("application/json"));

    let r = client
        .send(Method::GET, "/nope", None, vec![])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = client
        .send(Method::GET, "/write", None, vec![])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    let r = client
        .send(Method::GET, "/stats?from=9", None, vec![])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let stranger = SinkClient::new(&running.url())
        .unwrap()
        .with_admin_token("wrong");
    assert_eq!(
        stranger.pause().await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    let anonymous = SinkClient::new(&running.url()).unwrap();
    assert_eq!(
        anonymous.pause().await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );

    let r = client
        .send(Method::POST, "/admin/rate", json, b"{\"rate\":-1}".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = client
        .send(Method::POST, "/admin/stall", json, b"[]".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Still alive, nothing bad was audited, and every refusal was counted.
    assert!(
        client
            .write(&event(1, 1, 1), Format::Json)
            .await
            .unwrap()
            .is_success()
    );
    assert_eq!(client.stats(None).await.unwrap().received, 1);
    let text = client.metrics().await.unwrap();
    for reason in [
        "malformed",
        "too_large",
        "unsupported_media_type",
        "not_found",
        "method_not_allowed",
        "unauthorized",
    ] {
        assert!(
            text.contains(&format!(
                "sinkd_requests_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason}:\n{text}"
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_are_off_without_a_token() {
    let (running, client) = sinkd(&[]).await;
    assert_eq!(client.pause().await.unwrap().status, StatusCode::NOT_FOUND);
    assert!(
        client
            .write(&event(1, 1, 1), Format::Json)
            .await
            .unwrap()
            .is_success()
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_by_the_header_timeout() {
    let (running, _client) = sinkd(&["--header-timeout", "200ms"]).await;
    let mut stream = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    stream
        .write_all(b"POST /write HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection must be closed by the server");
    running.shutdown().await;
}
