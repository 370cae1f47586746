//! Which requests the server answers at all: protection against web pages.
//!
//! A page on any site can make a browser send requests to `127.0.0.1`. Three checks keep it out:
//! the `Host` header must name this server (a page that rebinds its own domain to 127.0.0.1
//! still sends its domain: DNS rebinding), a request that changes state must carry JSON (a
//! "simple" cross-site POST can only send form or text bodies), and an `Origin` a browser puts
//! on such a request must be one the CORS settings allow.
//!
//! The audio uploads are the one exception to "JSON only": OpenAI's
//! `/v1/audio/transcriptions` and `/translations` take `multipart/form-data`, which an HTML
//! form on any site can send without a CORS preflight. What keeps such a page out there is the
//! `Origin` check alone: browsers send `Origin` with every POST (the Fetch standard, for all
//! methods but GET and HEAD, forms included), so a cross-site form post is refused before it is
//! read. A client that is not a browser sends no `Origin`, and was never the threat. These
//! routes change no state either (a transcript is the only outcome, and a cross-site page could
//! not read it), so the worst a page of an allowed origin can do is what it can do with JSON.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The host names and origins a server accepts, fixed when it starts.
#[derive(Debug, Clone)]
pub struct RequestGuard {
    /// Names besides IP literals and `localhost` (lowercase, without port).
    allowed_hosts: Vec<String>,
    /// Browser origins besides loopback ones.
    allowed_origins: Vec<String>,
    /// A body announced larger than this is refused before it is read.
    max_body_bytes: usize,
    /// The same, on the audio upload routes.
    max_audio_body_bytes: usize,
}

/// The routes that take `multipart/form-data` (OpenAI's audio uploads) and a larger body.
pub const AUDIO_UPLOADS: [&str; 2] = ["/v1/audio/transcriptions", "/v1/audio/translations"];

fn is_audio_upload(path: &str) -> bool {
    AUDIO_UPLOADS.contains(&path)
}

impl RequestGuard {
    pub fn new(
        allowed_hosts: &[String],
        allowed_origins: &[String],
        max_body_bytes: usize,
        max_audio_body_bytes: usize,
    ) -> Self {
        RequestGuard {
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            allowed_origins: allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            max_body_bytes,
            max_audio_body_bytes,
        }
    }

    /// Whether `host` (a `Host` header: name or address, optional port) names this server. IP
    /// literals always do: rebinding needs a domain name, and a page cannot choose the `Host`
    /// a browser sends for an address.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host.trim()).to_ascii_lowercase();
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || bare.parse::<std::net::IpAddr>().is_ok()
            || self.allowed_hosts.contains(&name)
    }

    /// Whether a browser page of `origin` may use the server: loopback pages and the
    /// configured origins.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        is_loopback_origin(&origin) || self.allowed_origins.contains(&origin)
    }

    fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let audio = is_audio_upload(path);
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().unwrap_or("");
            if !self.host_allowed(host) {
                let name = shown(strip_port(host));
                return Err(ApiError::forbidden(
                    "host_not_allowed",
                    format!(
                        "this server does not answer to the host name '{name}' (a web page may be using DNS rebinding); if you reach it by that name, start it with --allowed-host {name}"
                    ),
                ));
            }
        }
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limit = if audio {
            self.max_audio_body_bytes
        } else {
            self.max_body_bytes
        };
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::too_large(limit));
        }
        if method != Method::POST {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("null");
            if !self.origin_allowed(origin) {
                let origin = shown(origin);
                return Err(ApiError::forbidden(
                    "origin_not_allowed",
                    format!(
                        "pages from '{origin}' may not use this server; start it with --cors-origin {origin} to allow them"
                    ),
                ));
            }
        }
        let content_type = headers.get(header::CONTENT_TYPE);
        if audio && !is_multipart(content_type) {
            return Err(ApiError::unsupported_media_type_for_audio());
        }
        if !audio && !is_json(content_type) {
            return Err(ApiError::unsupported_media_type());
        }
        Ok(())
    }
}

/// The middleware: every route, before authentication.
pub async fn guard(
    State(guard): State<Arc<RequestGuard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.method(), request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// A header value as an error message repeats it: no longer than a line.
fn shown(value: &str) -> String {
    value.chars().take(100).collect()
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    media_type_is(content_type, "application/json")
}

/// `multipart/form-data; boundary=…`.
fn is_multipart(content_type: Option<&HeaderValue>) -> bool {
    media_type_is(content_type, "multipart/form-data")
}

fn media_type_is(content_type: Option<&HeaderValue>, wanted: &str) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(wanted))
}

/// `name:port` → `name`, `[::1]:port` → `[::1]`; a bare IPv6 address is kept whole.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// A page or app served from this machine: `localhost`, `127.0.0.1` or `[::1]`, any scheme
/// (`http`, `https`, a desktop app's own such as `tauri://localhost`), any port.
pub fn is_loopback_origin(origin: &str) -> bool {
    let Some((_, host)) = origin.split_once("://") else {
        return false;
    };
    matches!(strip_port(host), "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_addresses_localhost_or_configured_names() {
        let guard = RequestGuard::new(&["My-Mac.local".into()], &[], 1024, 4096);
        for host in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "192.168.1.20:8000",
            "my-mac.local:8000",
            "::1",
        ] {
            assert!(guard.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8000",
            "",
        ] {
            assert!(!guard.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn origins_are_loopback_pages_or_configured_ones() {
        let guard = RequestGuard::new(&[], &["https://chat.example/".into()], 1024, 4096);
        assert!(guard.origin_allowed("http://localhost:3000"));
        assert!(guard.origin_allowed("http://127.0.0.1"));
        assert!(guard.origin_allowed("http://[::1]:5173"));
        assert!(guard.origin_allowed("tauri://localhost"));
        assert!(guard.origin_allowed("https://chat.example"));
        assert!(!guard.origin_allowed("https://evil.example"));
        assert!(!guard.origin_allowed("http://localhost.evil.example"));
        assert!(!guard.origin_allowed("null"));
    }

    #[test]
    fn only_json_bodies_change_state_but_audio_uploads_may_be_forms() {
        let json = |v: &str| is_json(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(!json("text/plain"));
        assert!(!json("application/x-www-form-urlencoded"));
        assert!(!json("multipart/form-data; boundary=x"));
        assert!(!is_json(None));

        let guard = RequestGuard::new(&[], &[], 1024, 4096);
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            }
            map
        };
        let form = headers(&[(header::CONTENT_TYPE, "multipart/form-data; boundary=x")]);
        let status = |path: &str, headers: &HeaderMap| {
            guard
                .check(&Method::POST, path, headers)
                .err()
                .map(|e| e.status.as_u16())
        };
        assert_eq!(status("/v1/audio/transcriptions", &form), None);
        assert_eq!(status("/v1/audio/translations", &form), None);
        // Forms stay refused everywhere else, and other media types on the audio routes.
        assert_eq!(status("/v1/chat/completions", &form), Some(415));
        assert_eq!(status("/v1/audio/transcriptions/x", &form), Some(415));
        let text = headers(&[(header::CONTENT_TYPE, "text/plain")]);
        assert_eq!(status("/v1/audio/transcriptions", &text), Some(415));
        // A cross-site page's form post is refused by its Origin.
        let cross_site = headers(&[
            (header::CONTENT_TYPE, "multipart/form-data; boundary=x"),
            (header::ORIGIN, "https://evil.example"),
        ]);
        assert_eq!(status("/v1/audio/transcriptions", &cross_site), Some(403));
        let local_page = headers(&[
            (header::CONTENT_TYPE, "multipart/form-data; boundary=x"),
            (header::ORIGIN, "http://localhost:3000"),
        ]);
        assert_eq!(status("/v1/audio/transcriptions", &local_page), None);
        // Each route's own body limit.
        let sized = |n: usize| {
            headers(&[
                (header::CONTENT_TYPE, "multipart/form-data; boundary=x"),
                (header::CONTENT_LENGTH, &n.to_string()),
            ])
        };
        assert_eq!(status("/v1/audio/transcriptions", &sized(4096)), None);
        assert_eq!(status("/v1/audio/transcriptions", &sized(4097)), Some(413));
        let json_sized = headers(&[
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_LENGTH, "2048"),
        ]);
        assert_eq!(status("/v1/chat/completions", &json_sized), Some(413));
    }
}
