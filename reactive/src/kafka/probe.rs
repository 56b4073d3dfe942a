//! Asking a broker which APIs it has (ApiVersions), so that a consumer configured for a group
//! protocol the broker lacks fails at once with the reason, instead of waiting forever for an
//! assignment. librdkafka reports nothing in that case: it just never joins.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// `ConsumerGroupHeartbeat`, the API of the KIP-848 consumer group protocol.
pub(super) const CONSUMER_GROUP_HEARTBEAT: i16 = 68;
const API_VERSIONS: i16 = 18;

/// Whether the first reachable bootstrap server offers `api_key`. `None` when no server
/// answered a plaintext ApiVersions request (TLS, SASL, or down): then nobody can tell, and
/// the client is left to find out.
pub(super) fn supports(bootstrap: &str, api_key: i16, timeout: Duration) -> Option<bool> {
    bootstrap
        .split(',')
        .map(|s| s.trim().trim_start_matches("PLAINTEXT://"))
        .filter(|s| !s.is_empty())
        .find_map(|server| api_keys(server, timeout).ok())
        .map(|keys| keys.contains(&api_key))
}

/// The API keys a broker offers, from an ApiVersions v0 exchange.
fn api_keys(server: &str, timeout: Duration) -> std::io::Result<Vec<i16>> {
    let addr = server
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let client = b"reactive-probe";
    let mut request = Vec::new();
    request.extend_from_slice(&API_VERSIONS.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes()); // version 0
    request.extend_from_slice(&1i32.to_be_bytes()); // correlation id
    request.extend_from_slice(&(client.len() as i16).to_be_bytes());
    request.extend_from_slice(client);
    stream.write_all(&(request.len() as i32).to_be_bytes())?;
    stream.write_all(&request)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|&n| n <= 1 << 20)
        .ok_or_else(|| std::io::Error::other("bad response size"))?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body)?;
    parse(&body).ok_or_else(|| std::io::Error::other("malformed ApiVersions response"))
}

/// An ApiVersions v0 response: correlation id, error code, then (key, min, max) triples.
fn parse(body: &[u8]) -> Option<Vec<i16>> {
    let i16_at = |at: usize| Some(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let i32_at = |at: usize| Some(i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?));
    if i16_at(4)? != 0 {
        return None;
    }
    let n = usize::try_from(i32_at(6)?).ok()?;
    (0..n).map(|i| i16_at(10 + i * 6)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_keys_of_a_v0_response() {
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
        body.extend_from_slice(&[0, 18, 0, 0, 0, 3]);
        body.extend_from_slice(&[0, 68, 0, 0, 0, 1]);
        assert_eq!(parse(&body), Some(vec![18, 68]));
        body[5] = 35; // UNSUPPORTED_VERSION
        assert_eq!(parse(&body), None);
        assert_eq!(parse(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 9]), None, "truncated");
    }

    #[test]
    fn an_unreachable_broker_tells_nothing() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let none = supports(
            &format!("127.0.0.1:{port}"),
            CONSUMER_GROUP_HEARTBEAT,
            Duration::from_millis(500),
        );
        assert_eq!(none, None);
    }
}
