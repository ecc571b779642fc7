//! The HTTP server around the routes, with the limits a hostile network needs:
//! - a **header read timeout**: a client that never finishes its request head is disconnected;
//! - an **idle-body timeout** (in [`super::routes`]): a body that sends no byte for that long
//!   fails the request, whose partial invoice is then removed like any failed upload;
//! - a **connection ceiling** below the file-descriptor limit: past it, new connections get an
//!   immediate `503 server_busy` with `Retry-After` and are closed (load shedding), so the
//!   service keeps answering instead of running out of descriptors.
//!
//! Shutdown stops accepting and lets the connections in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `filter` on `listener` until `shutdown` completes, then waits for open connections.
pub async fn serve<F>(listener: TcpListener, filter: F, limits: Limits, shutdown: impl Future<Output = ()>)
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(shed(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Every request says which protocol it came over (the length rule depends on it).
        let warp_service = warp::service(filter.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let wire = if req.version() == hyper::Version::HTTP_2 { super::Wire::Http2 } else { super::Wire::Http1 };
            req.extensions_mut().insert(wire);
            let mut warp_service = warp_service.clone();
            async move { tower_service::Service::call(&mut warp_service, req).await }
        });
        // HTTP/1.1, or HTTP/2 when the client starts with its preface (h2c, prior knowledge).
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(64 * 1024);
        builder.http2().timer(TokioTimer::new()).max_header_list_size(64 * 1024);
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

/// Answers `503 server_busy` at once and closes: the connection ceiling is reached.
async fn shed(mut stream: TcpStream) {
    tracing::warn!("connection ceiling reached: shedding a connection");
    let resp = ApiError::Unavailable { code: "server_busy" }.to_response("", "");
    let mut head =
        format!("HTTP/1.1 {}\r\nconnection: close\r\ncontent-length: {}\r\n", resp.status(), resp.body().len());
    for (name, value) in resp.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or_default()));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(resp.body()).await;
    let _ = stream.shutdown().await;
}
