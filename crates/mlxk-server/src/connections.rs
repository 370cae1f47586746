//! Accepting connections, bounded in number and in how long a client may take to send its
//! request: slow or silent clients cannot hold the server, and `/health` still answers when the
//! regular slots are taken.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Slots beyond the configured limit, each with a short header timeout: a monitoring probe
/// (`/health`) gets in while idle clients fill the regular slots, and an idle client that
/// lands here is gone within a second.
const RESERVED_SLOTS: usize = 16;
const RESERVED_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one log line per this long about refused connections: a flood must not flood the log.
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// After a failed accept (out of file descriptors), before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections served at once (besides the reserved slots).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (idle keep-alive included).
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open connections finish
/// their responses (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let regular = Arc::new(Semaphore::new(limits.max_connections));
    let reserved = Arc::new(Semaphore::new(RESERVED_SLOTS));
    let (stop, stopping) = watch::channel(false);
    let mut refused = RefusedConnections::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let (permit, header_timeout) = match Arc::clone(&regular).try_acquire_owned() {
            Ok(permit) => (permit, limits.header_timeout),
            Err(_) => match Arc::clone(&reserved).try_acquire_owned() {
                Ok(permit) => (permit, RESERVED_HEADER_TIMEOUT),
                Err(_) => {
                    refused.note(limits.max_connections);
                    continue; // dropping the stream closes it
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            // hyper's header timeout starts with the first byte (the protocol is detected
            // first): a client that sends nothing at all is let go here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                drop(permit);
                return;
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut signalled = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    changed = stopping.changed(), if !signalled => {
                        signalled = true;
                        if changed.is_ok() {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Each connection holds its permit until it ends.
    let _ = regular.acquire_many(limits.max_connections as u32).await;
    let _ = reserved.acquire_many(RESERVED_SLOTS as u32).await;
}

/// Counts connections closed for want of a slot, and says so now and then.
#[derive(Default)]
struct RefusedConnections {
    since_last_log: u64,
    last_log: Option<std::time::Instant>,
}

impl RefusedConnections {
    fn note(&mut self, limit: usize) {
        self.since_last_log += 1;
        if self
            .last_log
            .is_none_or(|at| at.elapsed() >= REFUSED_LOG_INTERVAL)
        {
            tracing::warn!(
                limit,
                refused = self.since_last_log,
                "too many open connections; closing new ones (raise --max-connections if they are real clients)"
            );
            self.since_last_log = 0;
            self.last_log = Some(std::time::Instant::now());
        }
    }
}
