//! The `healthcheck` subcommand every binary has: GET a readiness URL and exit 0 when it
//! answers 200. Container images have no curl; the binary probes itself.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET `url` (plain `http://host:port/path`) and report whether it answered 200.
pub async fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs can be probed, got {url}"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    let request = async {
        let mut stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut response = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let status_line = text.lines().next().unwrap_or_default().to_owned();
        if status_line.split_whitespace().nth(1) == Some("200") {
            Ok(())
        } else {
            let body = text
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .trim()
                .to_owned();
            Err(format!("{url}: {status_line} {body}"))
        }
    };
    tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

/// Run the probe as a subcommand: prints one line, returns the process exit code.
pub async fn run(url: &str) -> i32 {
    match check(url, Duration::from_secs(3)).await {
        Ok(()) => {
            println!("ok: {url}");
            0
        }
        Err(why) => {
            eprintln!("unhealthy: {why}");
            1
        }
    }
}
