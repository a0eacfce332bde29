//! Outbound HTTP for sinks, through WASI 0.2's `wasi:http/outgoing-handler` (feature `http`). The
//! host sends a request only to hosts the plugin's `capabilities.http` lists; anything else fails
//! as a transport error naming the WASI error code. Blocking: one request at a time.
//!
//! ```ignore
//! let response = http::post("https://api.example.com/logs", &[("content-type", "application/json")], body, TIMEOUT)?;
//! if response.is_success() { ... }
//! ```

use std::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

/// The most bytes `blocking-write-and-flush` accepts in one call.
const WRITE_CHUNK: usize = 4096;
/// The most bytes of a response body kept (the rest is read and dropped).
const MAX_BODY: usize = 64 << 10;

/// An `http://` or `https://` URL, split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    https: bool,
    /// `host` or `host:port`.
    pub authority: String,
    /// The path and query, starting with `/`.
    pub path_with_query: String,
}

impl Url {
    /// Splits `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("{url:?}: the scheme must be http or https"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: no host, or user info before it"));
        }
        let path_with_query = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
        Ok(Url { https, authority: authority.to_owned(), path_with_query })
    }
}

/// The answer to a request.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, up to 64 KiB.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether trying again later may get another answer: 408, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 408 | 429 | 500..=599)
    }
}

/// A request that got no answer: refused by the host, or failed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// POSTs `body` to `url` with `headers`; `timeout` bounds connecting and the wait for the answer's
/// first byte.
pub fn post(url: &Url, headers: &[(&str, &str)], body: &[u8], timeout: Duration) -> Result<Response, HttpError> {
    let fields: Vec<(String, Vec<u8>)> =
        headers.iter().map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec())).collect();
    let fields = Fields::from_list(&fields).map_err(|err| HttpError(format!("headers refused: {err:?}")))?;
    let request = OutgoingRequest::new(fields);
    let refused = |what: &str| HttpError(format!("the host refused the request's {what}"));
    request.set_method(&Method::Post).map_err(|()| refused("method"))?;
    let scheme = if url.https { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| refused("scheme"))?;
    request.set_authority(Some(&url.authority)).map_err(|()| refused("authority"))?;
    request.set_path_with_query(Some(&url.path_with_query)).map_err(|()| refused("path"))?;
    let outgoing_body = request.body().map_err(|()| refused("body"))?;
    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    // A host that does not support a timeout refuses to set it; the request still goes out.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));

    // Send first, then stream the body: the host buffers little of a body before the request is
    // sent, so writing a large body first could wait forever.
    let pending = outgoing_handler::handle(request, Some(options)).map_err(|code| transport(&code))?;
    let written = write_body(outgoing_body, body);
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(transport(&code)),
        Some(Err(())) => return Err(HttpError("the response was already taken".into())),
        None => return Err(HttpError("no response after waiting".into())),
    };
    // The answer came; a body that could not be written all the same is a failed request.
    written.map_err(|reason| HttpError(format!("writing the body: {reason}")))?;
    let status = response.status();
    let body = response.consume().map(read_body).unwrap_or_default();
    Ok(Response { status, body })
}

/// Writes all of `bytes` to the request body and finishes it.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body.write().map_err(|()| "body stream already taken".to_owned())?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream.blocking_write_and_flush(chunk).map_err(|err| match err {
            StreamError::Closed => "the host closed the body stream".to_owned(),
            StreamError::LastOperationFailed(err) => err.to_debug_string(),
        })?;
    }
    // The stream must be gone before the body it belongs to can be finished.
    drop(stream);
    OutgoingBody::finish(body, None).map_err(|code| format!("{code:?}"))
}

/// Up to [`MAX_BODY`] bytes of a response body; a body that fails midway is cut there.
fn read_body(body: IncomingBody) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(stream) = body.stream() {
        while let Ok(chunk) = stream.blocking_read(WRITE_CHUNK as u64) {
            if bytes.len() < MAX_BODY {
                bytes.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - bytes.len())]);
            }
        }
    }
    bytes
}

fn transport(code: &ErrorCode) -> HttpError {
    HttpError(format!("request failed: {code:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        let url = Url::parse("https://api.example.com:8443/api/service_logs/v1/cluster_logs?x=1").unwrap();
        assert_eq!((url.https, url.authority.as_str()), (true, "api.example.com:8443"));
        assert_eq!(url.path_with_query, "/api/service_logs/v1/cluster_logs?x=1");
        assert_eq!(Url::parse("http://h").unwrap().path_with_query, "/");
        assert_eq!(Url::parse("http://h?q").unwrap().path_with_query, "/?q");
        assert!(Url::parse("ftp://h/").is_err());
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("http://user@h/").is_err());
    }
}
