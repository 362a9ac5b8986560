//! The admin HTTP listener: `/metrics` (Prometheus text) and `/health`.
//!
//! A deliberately tiny HTTP/1.1 responder — one request per connection,
//! GET only, bounded header size and time — because these endpoints are
//! scraped by Prometheus and probed by orchestrators, nothing more.

use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests forever.
pub async fn serve(listener: TcpListener, metrics: PrometheusHandle) {
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &metrics)).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

async fn handle(mut stream: TcpStream, metrics: &PrometheusHandle) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_REQUEST || stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let response = respond(method, path, metrics);
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.shutdown().await
}

fn respond(method: &str, path: &str, metrics: &PrometheusHandle) -> Response {
    let text = |status, body: &str| Response { status, content_type: "text/plain; charset=utf-8", body: body.into() };
    match (method, path) {
        ("GET", "/metrics") => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4",
            body: crate::observe::render(metrics),
        },
        ("GET", "/health") => text("200 OK", "ok\n"),
        (_, "/metrics" | "/health") => text("405 Method Not Allowed", "method not allowed\n"),
        _ => text("404 Not Found", "not found\n"),
    }
}
