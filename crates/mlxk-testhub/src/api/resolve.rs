//! `GET|HEAD /{org}/{name}/resolve/{rev}/{path}`: file bytes, served directly (no redirect to a
//! CDN) with the headers `huggingface_hub` reads from the Hub: `ETag`, `X-Repo-Commit`,
//! `X-Linked-Etag`/`X-Linked-Size` for LFS files, and single byte ranges.

use std::io::{self, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::{repo_id, Shared};
use crate::config::Knobs;
use crate::error::HubError;

const CHUNK: u64 = 64 * 1024;

pub async fn resolve(
    State(state): State<Shared>,
    method: Method,
    Path((org, name, rev, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let identity = state.identify(&headers)?;
    let id = repo_id(&identity, &org, &name)?;
    let record = state.check_read(&identity, &id)?;
    let commit_id = state.store.resolve(&id, &rev)?;
    state.check_gate(&record, &identity, &id)?;
    let commit = state.store.commit(&id, &commit_id)?;
    let entry = commit
        .files
        .get(&path)
        .ok_or_else(|| HubError::entry_not_found(&path, Some(&commit_id)))?;
    let size = entry.size;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| parse_range(v, size))
                .ok_or_else(|| range_not_satisfiable(size))?,
        ),
    };
    let (start, len) = range.map_or((0, size), |(a, b)| (a, b - a + 1));

    let mut response = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{}\"", entry.etag()))
        .header("x-repo-commit", &commit_id);
    if let Some((a, b)) = range {
        response = response.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{size}"));
    }
    if let Some(lfs) = &entry.lfs {
        response = response
            .header("x-linked-etag", format!("\"{}\"", lfs.sha256))
            .header("x-linked-size", lfs.size);
    }
    let file_name = path.rsplit('/').next().unwrap_or(&path);
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "inline; filename*=UTF-8''{file_name}; filename=\"{file_name}\";"
    )) {
        response = response.header(header::CONTENT_DISPOSITION, disposition);
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let knobs = take_download_knobs(&state);
        let file = state.store.file_path(&id, &commit_id, &path);
        file_body(file, start, len, knobs)
            .await
            .map_err(|e| HubError::internal(format!("cannot read {path}: {e}")))?
    };
    response
        .body(body)
        .map_err(|e| HubError::internal(e.to_string()))
}

/// `bytes=N-`, `bytes=N-M` or `bytes=-N` to an inclusive range within `size`; `None` when
/// malformed, multiple or unsatisfiable (answered with 416).
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        return (suffix > 0).then(|| (size.saturating_sub(suffix), size - 1));
    }
    let start: u64 = first.parse().ok()?;
    let end = if last.is_empty() {
        size - 1
    } else {
        let end: u64 = last.parse().ok()?;
        if end < start {
            return None;
        }
        end.min(size - 1)
    };
    (start < size).then_some((start, end))
}

fn range_not_satisfiable(size: u64) -> HubError {
    let mut error = HubError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        None,
        "Requested range not satisfiable",
    );
    error
        .headers
        .push(("content-range", format!("bytes */{size}")));
    error
}

/// The knobs for one download; spends one unit of `fail_budget` when it cuts this response.
fn take_download_knobs(state: &Shared) -> Knobs {
    let mut knobs = state.knobs.lock().unwrap_or_else(|e| e.into_inner());
    let snapshot = knobs.clone();
    if snapshot.fail_after_bytes.is_some() {
        match knobs.fail_budget {
            Some(0) => {
                return Knobs {
                    fail_after_bytes: None,
                    ..snapshot
                }
            }
            Some(n) => knobs.fail_budget = Some(n - 1),
            None => {}
        }
    }
    snapshot
}

struct Reader {
    file: tokio::fs::File,
    remaining: u64,
    sent: u64,
    knobs: Knobs,
}

async fn file_body(path: PathBuf, start: u64, len: u64, knobs: Knobs) -> io::Result<Body> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(start)).await?;
    let reader = Reader {
        file,
        remaining: len,
        sent: 0,
        knobs,
    };
    Ok(Body::from_stream(futures_util::stream::unfold(
        reader, next_chunk,
    )))
}

async fn next_chunk(mut reader: Reader) -> Option<(io::Result<Bytes>, Reader)> {
    if reader.remaining == 0 {
        return None;
    }
    let mut want = reader.remaining.min(CHUNK);
    if let Some(cut) = reader.knobs.fail_after_bytes {
        if reader.sent >= cut {
            // Let the bytes already sent reach the client before the connection drops: an
            // abort with unread data could discard them in the client's kernel.
            tokio::time::sleep(Duration::from_millis(200)).await;
            reader.remaining = 0;
            let error = io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "testhub: fail_after_bytes",
            );
            return Some((Err(error), reader));
        }
        want = want.min(cut - reader.sent);
    }
    if let Some(rate) = reader.knobs.throttle_bytes_per_sec.filter(|r| *r > 0) {
        want = want.min((rate / 10).max(1));
    }
    let mut buffer = vec![0u8; want as usize];
    match reader.file.read(&mut buffer).await {
        Ok(0) => {
            reader.remaining = 0;
            let error = io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than recorded");
            Some((Err(error), reader))
        }
        Ok(n) => {
            buffer.truncate(n);
            if let Some(rate) = reader.knobs.throttle_bytes_per_sec.filter(|r| *r > 0) {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
            reader.remaining -= n as u64;
            reader.sent += n as u64;
            Some((Ok(Bytes::from(buffer)), reader))
        }
        Err(error) => {
            reader.remaining = 0;
            Some((Err(error), reader))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=3-5", 10), Some((3, 5)));
        assert_eq!(parse_range("bytes=3-99", 10), Some((3, 9)));
        assert_eq!(parse_range("bytes=-4", 10), Some((6, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=5-3", 10), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
    }
}
