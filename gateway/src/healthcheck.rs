//! `gateway healthcheck`: GET an admin URL and exit by its status. The container image
//! has no shell and no curl, so Docker's `HEALTHCHECK` runs the gateway binary itself.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// The admin listener's liveness URL on its default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/healthz";

/// How long one check may take before it counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `url` (plain `http://` only: the admin listener does not speak TLS) and returns
/// its status line when it is 2xx, else why not.
pub async fn check(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "`{url}`: only http:// URLs (the admin listener is plain HTTP)"
        ));
    }
    let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map_or_else(|| host.to_string(), ToString::to_string);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), ToString::to_string);
    let attempt = async {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, &authority)
            .header(http::header::USER_AGENT, "gateway-healthcheck")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            Ok(format!("{url}: {status}"))
        } else {
            Err(format!("{url}: {status}"))
        }
    };
    tokio::time::timeout(TIMEOUT, attempt)
        .await
        .map_err(|_| format!("{url}: no answer within {} s", TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn one_shot_server(status_line: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let answer = format!("HTTP/1.1 {status_line}\r\ncontent-length: 0\r\n\r\n");
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        format!("http://{addr}/healthz")
    }

    #[tokio::test]
    async fn ok_is_ok_and_anything_else_is_not() {
        assert!(check(&one_shot_server("200 OK").await).await.is_ok());
        let err = check(&one_shot_server("503 Service Unavailable").await)
            .await
            .unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[tokio::test]
    async fn refused_and_wrong_urls_say_why() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = check(&format!("http://{addr}/healthz")).await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
        assert!(
            check("https://127.0.0.1:1/healthz")
                .await
                .unwrap_err()
                .contains("only http://")
        );
        assert!(check("not a url").await.is_err());
    }
}
