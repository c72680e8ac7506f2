//! The HTTP/1.1 upgrade handshake (RFC 6455 4.2): parse the request from a byte buffer,
//! validate it, and write the `101` answer or a rejection.
//!
//! Incomplete input consumes nothing (`Ok(None)`). No I/O and no allocation while parsing:
//! the request borrows from the caller's buffer and header array. Must never panic on any
//! input from the network.

use std::io::Write as _;

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use sha1::{Digest as _, Sha1};

/// The GUID appended to the client key before hashing (RFC 6455 1.3).
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Length of a `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1 digest.
pub const ACCEPT_KEY_LEN: usize = 28;

/// Length of a valid `Sec-WebSocket-Key`: base64 (padded) of 16 bytes.
const CLIENT_KEY_LEN: usize = 24;

/// Limits on the upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Largest request head in bytes (request line and headers); over it: 431.
    pub max_head_bytes: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_head_bytes: 8 * 1024,
        }
    }
}

/// Why a handshake was refused; each maps to an HTTP status and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Malformed or not a valid WebSocket upgrade: 400 with the reason.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// `Sec-WebSocket-Version` is not 13: 426 with `Sec-WebSocket-Version: 13`.
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// The request head is larger than the limit, or has too many headers: 431.
    #[error("request header fields too large")]
    HeadersTooLarge,
}

impl HandshakeError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::BadRequest(_) => 400,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HeadersTooLarge => 431,
        }
    }

    /// A short human-readable reason, sent as the response body.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::BadRequest(reason) => reason,
            HandshakeError::UnsupportedVersion => "unsupported WebSocket version",
            HandshakeError::HeadersTooLarge => "request header fields too large",
        }
    }

    /// A stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeError::BadRequest(_) => "bad_request",
            HandshakeError::UnsupportedVersion => "unsupported_version",
            HandshakeError::HeadersTooLarge => "headers_too_large",
        }
    }
}

/// A validated upgrade request, borrowing from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'h, 'b> {
    /// The request path, without the query string.
    pub path: &'b str,
    /// The query string (after `?`), if any.
    pub query: Option<&'b str>,
    /// The `Host` header.
    pub host: &'b str,
    /// The `Origin` header, if any (browsers always send it).
    pub origin: Option<&'b str>,
    /// The `Sec-WebSocket-Key` header (validated: base64 of 16 bytes).
    pub key: &'b str,
    headers: &'h [httparse::Header<'b>],
}

impl<'h, 'b> Request<'h, 'b> {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// All headers in order, as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The subprotocols the client offered, in its order (from every
    /// `Sec-WebSocket-Protocol` header, comma-separated, trimmed, empty items skipped).
    pub fn protocols(&self) -> impl Iterator<Item = &'b str> + '_ {
        // Protocols are tokens (RFC 6455 4.1): no quoted strings, every comma splits.
        header_values(self.headers, "sec-websocket-protocol")
            .flat_map(|v| v.split(','))
            .map(trim_ows)
            .filter(|p| !p.is_empty())
    }

    /// The extension offers (`Sec-WebSocket-Extensions` items), in order, unparsed.
    ///
    /// Items are split on top-level commas (not inside quoted strings); an item keeps its
    /// parameters, e.g. `permessage-deflate; client_max_window_bits`.
    pub fn extensions(&self) -> impl Iterator<Item = &'b str> + '_ {
        list_items(self.headers, "sec-websocket-extensions")
    }
}

/// The UTF-8 values of every header called `name` (case-insensitive), in order.
fn header_values<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    name: &'static str,
) -> impl Iterator<Item = &'b str> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// The items of every header called `name`, as HTTP comma-separated lists.
fn list_items<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    name: &'static str,
) -> impl Iterator<Item = &'b str> + 'h {
    header_values(headers, name).flat_map(ListItems::new)
}

/// Splits an HTTP list value (RFC 9110 5.6.1) on top-level commas: commas inside a
/// quoted string do not split. Items are trimmed of optional whitespace; empty items skipped.
#[derive(Debug, Clone)]
struct ListItems<'a> {
    rest: &'a str,
}

impl<'a> ListItems<'a> {
    fn new(value: &'a str) -> Self {
        ListItems { rest: value }
    }
}

impl<'a> Iterator for ListItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while !self.rest.is_empty() {
            let bytes = self.rest.as_bytes();
            let mut in_quotes = false;
            let mut escaped = false;
            let mut end = bytes.len();
            for (i, &b) in bytes.iter().enumerate() {
                if escaped {
                    escaped = false;
                } else if in_quotes && b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_quotes = !in_quotes;
                } else if b == b',' && !in_quotes {
                    end = i;
                    break;
                }
            }
            // `end` is either the length or the index of an ASCII comma: a char boundary.
            let item = trim_ows(&self.rest[..end]);
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            if !item.is_empty() {
                return Some(item);
            }
        }
        None
    }
}

/// Trim HTTP optional whitespace (space and horizontal tab).
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Trim HTTP optional whitespace from raw bytes.
fn trim_ows_bytes(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Whether any header called `name` lists `token` (case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &'static str, token: &str) -> bool {
    list_items(headers, name).any(|item| item.eq_ignore_ascii_case(token))
}

/// The only header called `name`: `Ok(None)` when absent, `Err(())` when repeated.
fn single_header<'b>(headers: &[httparse::Header<'b>], name: &str) -> Result<Option<&'b [u8]>, ()> {
    let mut found = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        if found.is_some() {
            return Err(());
        }
        found = Some(h.value);
    }
    Ok(found)
}

/// Parse and validate an upgrade request at the start of `buf`.
///
/// Returns the request and the length of the request head (bytes after it, if any, are the
/// first WebSocket frames). `Ok(None)`: incomplete and still under the size limit.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    limits: &HandshakeLimits,
) -> Result<Option<(Request<'h, 'b>, usize)>, HandshakeError> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Err(HandshakeError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(_) => return Err(HandshakeError::BadRequest("malformed request")),
    };
    if head_len > limits.max_head_bytes {
        return Err(HandshakeError::HeadersTooLarge);
    }
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = req;
    let headers: &'h [httparse::Header<'b>] = headers;

    if method != Some("GET") {
        return Err(HandshakeError::BadRequest("method must be GET"));
    }
    if version != Some(1) {
        return Err(HandshakeError::BadRequest("HTTP version must be 1.1"));
    }
    let target = path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(HandshakeError::BadRequest("invalid request target"));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };

    let host = match single_header(headers, "host") {
        Ok(Some(v)) => trim_ows_bytes(v),
        Ok(None) => return Err(HandshakeError::BadRequest("missing Host")),
        Err(()) => return Err(HandshakeError::BadRequest("duplicate Host")),
    };
    // A host (RFC 3986 authority without userinfo) is visible ASCII; this also rules out
    // empty values and makes the `&str` conversion infallible.
    if host.is_empty() || !host.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(HandshakeError::BadRequest("invalid Host"));
    }
    let host = std::str::from_utf8(host).map_err(|_| HandshakeError::BadRequest("invalid Host"))?;

    if !has_token(headers, "upgrade", "websocket") {
        return Err(HandshakeError::BadRequest("Upgrade must be websocket"));
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::BadRequest(
            "Connection must include Upgrade",
        ));
    }

    // Only after the request is known to be a WebSocket upgrade: the wrong version is 426.
    let mut version_seen = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-version"))
    {
        if trim_ows_bytes(h.value) != b"13" {
            return Err(HandshakeError::UnsupportedVersion);
        }
        version_seen = true;
    }
    if !version_seen {
        return Err(HandshakeError::UnsupportedVersion);
    }

    const BAD_KEY: HandshakeError = HandshakeError::BadRequest("invalid Sec-WebSocket-Key");
    let key = match single_header(headers, "sec-websocket-key") {
        Ok(Some(v)) => trim_ows_bytes(v),
        Ok(None) => return Err(HandshakeError::BadRequest("missing Sec-WebSocket-Key")),
        Err(()) => return Err(BAD_KEY),
    };
    if key.len() != CLIENT_KEY_LEN {
        return Err(BAD_KEY);
    }
    let mut decoded = [0u8; 18];
    match BASE64.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(BAD_KEY),
    }
    let key = std::str::from_utf8(key).map_err(|_| BAD_KEY)?;

    let origin = match single_header(headers, "origin") {
        Ok(Some(v)) => Some(
            std::str::from_utf8(trim_ows_bytes(v))
                .map_err(|_| HandshakeError::BadRequest("invalid Origin"))?,
        ),
        Ok(None) => None,
        Err(()) => return Err(HandshakeError::BadRequest("duplicate Origin")),
    };

    // Values exposed as `&str` through `protocols()` and `extensions()` must be UTF-8.
    for h in headers {
        let exposed = h.name.eq_ignore_ascii_case("sec-websocket-protocol")
            || h.name.eq_ignore_ascii_case("sec-websocket-extensions");
        if exposed && std::str::from_utf8(h.value).is_err() {
            return Err(HandshakeError::BadRequest("header value is not UTF-8"));
        }
    }

    Ok(Some((
        Request {
            path,
            query,
            host,
            origin,
            key,
            headers,
        },
        head_len,
    )))
}

/// The `Sec-WebSocket-Accept` value for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let mut out = [0u8; ACCEPT_KEY_LEN];
    accept_key_into(key, &mut out).to_owned()
}

/// The `Sec-WebSocket-Accept` value for a client key, computed into a stack buffer.
pub fn accept_key_into<'o>(key: &[u8], out: &'o mut [u8; ACCEPT_KEY_LEN]) -> &'o str {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    let digest = sha.finalize();
    // 20 bytes encode to exactly 28 base64 characters, so neither step can fail.
    let n = BASE64.encode_slice(digest, &mut out[..]).unwrap_or(0);
    std::str::from_utf8(&out[..n]).unwrap_or("")
}

/// Choose the subprotocol: the first one the client offered that the server supports.
pub fn select_protocol<'b>(
    mut offered: impl Iterator<Item = &'b str>,
    supported: &[String],
) -> Option<&'b str> {
    offered.find(|p| supported.iter().any(|s| s == p))
}

/// Append the `101 Switching Protocols` answer.
///
/// CR, LF and other control characters in `protocol` and `extensions` are dropped.
pub fn write_accept(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    out: &mut Vec<u8>,
) {
    let mut accept = [0u8; ACCEPT_KEY_LEN];
    let accept = accept_key_into(key.as_bytes(), &mut accept);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        push_sanitised(out, protocol);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(extensions) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        push_sanitised(out, extensions);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a rejection: status line, `Connection: close`, a plain-text body with the reason,
/// `Sec-WebSocket-Version: 13` when the status is 426, and the `WWW-Authenticate: Bearer`
/// challenge every 401 must carry (RFC 9110 §15.5.2, RFC 6750 §3).
///
/// Control characters (CR and LF included) are dropped from the reason so that it cannot
/// inject headers or split the response. A status outside 100..=999 is written as 500.
pub fn write_reject(status: u16, reason: &str, out: &mut Vec<u8>) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let body_len = reason.bytes().filter(|&b| keep_byte(b)).count() + 1;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {body_len}\r\n\
         Connection: close\r\n",
        reason_phrase(status)
    );
    if status == 426 {
        out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    if status == 401 {
        out.extend_from_slice(b"WWW-Authenticate: Bearer realm=\"corecast\"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    push_sanitised(out, reason);
    out.push(b'\n');
}

/// The standard reason phrase for the statuses a handshake answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Bytes allowed in a header value or the one-line body we write: no ASCII controls
/// other than horizontal tab, no DEL. Non-ASCII (UTF-8) bytes pass.
fn keep_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Append `s` without the bytes `keep_byte` refuses (removing ASCII bytes keeps UTF-8 valid).
fn push_sanitised(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|&b| keep_byte(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
Host: example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

    const FIREFOX: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: localhost:9001\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: http://localhost:9001\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: same-origin\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\
\r\n";

    /// A minimal valid request with `extra` header lines (each ending in CRLF) added.
    fn request_with(extra: &str) -> Vec<u8> {
        format!(
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n"
        )
        .into_bytes()
    }

    /// A request built from a request line and exactly these header lines.
    fn raw(line: &str, headers: &[&str]) -> Vec<u8> {
        let mut s = format!("{line}\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    const GOOD: [&str; 5] = [
        "Host: h",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    /// The good headers with the one starting with `name` replaced by `with` (or dropped).
    fn good_but(name: &str, with: Option<&'static str>) -> Vec<u8> {
        let mut hs: Vec<&str> = GOOD
            .iter()
            .copied()
            .filter(|h| !h.starts_with(name))
            .collect();
        hs.extend(with);
        raw("GET /ws HTTP/1.1", &hs)
    }

    /// Parse with 32 header slots and default limits; the outcome without the borrows.
    fn outcome(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        parse_request(buf, &mut hs, &HandshakeLimits::default()).map(|r| r.map(|(_, n)| n))
    }

    fn err(buf: &[u8]) -> HandshakeError {
        match outcome(buf) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut buf = [0u8; ACCEPT_KEY_LEN];
        assert_eq!(
            accept_key_into(b"dGhlIHNhbXBsZSBub25jZQ==", &mut buf),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn minimal_request_is_accepted() {
        let buf = request_with("");
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let (req, n) = parse_request(&buf, &mut hs, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query, None);
        assert_eq!(req.host, "h");
        assert_eq!(req.origin, None);
        assert_eq!(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(req.protocols().count(), 0);
        assert_eq!(req.extensions().count(), 0);
        assert_eq!(req.headers().count(), 5);
    }

    #[test]
    fn chrome_request() {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let (req, n) = parse_request(CHROME, &mut hs, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, CHROME.len());
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query, Some("room=1"));
        assert_eq!(req.host, "example.com:8080");
        assert_eq!(req.origin, Some("https://example.com"));
        assert_eq!(
            accept_key(req.key.as_bytes()),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            req.extensions().collect::<Vec<_>>(),
            ["permessage-deflate; client_max_window_bits"]
        );
        assert_eq!(req.protocols().count(), 0);
    }

    #[test]
    fn firefox_request() {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let (req, n) = parse_request(FIREFOX, &mut hs, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, FIREFOX.len());
        assert_eq!(req.path, "/ws");
        assert_eq!(req.host, "localhost:9001");
        assert_eq!(req.origin, Some("http://localhost:9001"));
        assert_eq!(req.key, "x3JJHMbDL1EzLkh9GBhXDw==");
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
        assert_eq!(req.extensions().collect::<Vec<_>>(), ["permessage-deflate"]);
        assert_eq!(req.header("sec-fetch-mode"), Some(&b"websocket"[..]));
    }

    #[test]
    fn pipelined_frame_bytes_are_not_part_of_the_head() {
        let mut buf = request_with("");
        let head = buf.len();
        // A masked text frame "Hi" sent right behind the request.
        buf.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
        assert_eq!(outcome(&buf), Ok(Some(head)));
    }

    #[test]
    fn names_and_tokens_are_case_insensitive() {
        let buf = raw(
            "GET / HTTP/1.1",
            &[
                "hOsT: h",
                "UPGRADE: WebSocket",
                "connection: keep-alive, UPGRADE",
                "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
                "SEC-WEBSOCKET-VERSION: 13",
                "X-Custom: yes",
            ],
        );
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let (req, _) = parse_request(&buf, &mut hs, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.header("x-CUSTOM"), Some(&b"yes"[..]));
        assert_eq!(req.header("Host"), Some(&b"h"[..]));
        assert_eq!(req.header("missing"), None);
        assert_eq!(req.path, "/");
    }

    #[test]
    fn upgrade_token_in_a_list() {
        let buf = good_but("Upgrade", Some("Upgrade: h2c, websocket"));
        assert!(matches!(outcome(&buf), Ok(Some(_))));
        let buf = good_but("Upgrade", Some("Upgrade: websockets"));
        assert_eq!(
            err(&buf),
            HandshakeError::BadRequest("Upgrade must be websocket")
        );
    }

    #[test]
    fn multiple_protocol_headers() {
        let buf = request_with(
            "Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol:  ,c ,, \r\n\
             Sec-WebSocket-Protocol: d\r\n",
        );
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let (req, _) = parse_request(&buf, &mut hs, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        let supported = ["d".to_string(), "c".to_string()];
        assert_eq!(select_protocol(req.protocols(), &supported), Some("c"));
        assert_eq!(select_protocol(req.protocols(), &["x".to_string()]), None);
        assert_eq!(select_protocol(req.protocols(), &[]), None);
    }

    #[test]
    fn quoted_comma_in_protocol_still_splits() {
        let buf = request_with("Sec-WebSocket-Protocol: \"a,b\"\r\n");
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let (req, _) = parse_request(&buf, &mut hs, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["\"a", "b\""]);
    }

    #[test]
    fn extension_items_keep_parameters_and_quoted_commas() {
        let buf = request_with(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10, \
             x-foo; a=\"1,2\"; b, , x-bar\r\nSec-WebSocket-Extensions: x-baz; q=\"\\\",\"\r\n",
        );
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let (req, _) = parse_request(&buf, &mut hs, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            req.extensions().collect::<Vec<_>>(),
            [
                "permessage-deflate; client_max_window_bits=10",
                "x-foo; a=\"1,2\"; b",
                "x-bar",
                "x-baz; q=\"\\\",\"",
            ]
        );
    }

    #[test]
    fn rejects_missing_or_odd_host() {
        assert_eq!(
            err(&good_but("Host", None)),
            HandshakeError::BadRequest("missing Host")
        );
        assert_eq!(
            err(&good_but("Host", Some("Host:"))),
            HandshakeError::BadRequest("invalid Host")
        );
        assert_eq!(
            err(&good_but("Host", Some("Host: a b"))),
            HandshakeError::BadRequest("invalid Host")
        );
        let buf = request_with("Host: other\r\n");
        assert_eq!(err(&buf), HandshakeError::BadRequest("duplicate Host"));
        let mut buf = good_but("Host", Some("Host: \u{e9}"));
        assert_eq!(err(&buf), HandshakeError::BadRequest("invalid Host"));
        // Raw non-UTF-8 byte in the value.
        let at = buf
            .windows(2)
            .position(|w| w == "\u{e9}".as_bytes())
            .unwrap();
        buf[at] = 0xff;
        assert_eq!(err(&buf), HandshakeError::BadRequest("invalid Host"));
    }

    #[test]
    fn rejects_missing_or_wrong_upgrade() {
        let e = HandshakeError::BadRequest("Upgrade must be websocket");
        assert_eq!(err(&good_but("Upgrade", None)), e);
        assert_eq!(err(&good_but("Upgrade", Some("Upgrade: h2c"))), e);
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn rejects_missing_or_wrong_connection() {
        let e = HandshakeError::BadRequest("Connection must include Upgrade");
        assert_eq!(err(&good_but("Connection", None)), e);
        assert_eq!(
            err(&good_but("Connection", Some("Connection: keep-alive"))),
            e
        );
        assert_eq!(
            err(&good_but("Connection", Some("Connection: upgraded"))),
            e
        );
    }

    #[test]
    fn rejects_missing_or_invalid_key() {
        assert_eq!(
            err(&good_but("Sec-WebSocket-Key", None)),
            HandshakeError::BadRequest("missing Sec-WebSocket-Key")
        );
        let bad = HandshakeError::BadRequest("invalid Sec-WebSocket-Key");
        for key in [
            "Sec-WebSocket-Key:",
            "Sec-WebSocket-Key: hello",
            // Base64 of 15 and 17 bytes.
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA",
            "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==",
            // Non-canonical trailing bits.
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==",
        ] {
            assert_eq!(err(&good_but("Sec-WebSocket-Key", Some(key))), bad, "{key}");
        }
        let twice = request_with("Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n");
        assert_eq!(err(&twice), bad);
    }

    #[test]
    fn version_8_is_426() {
        let buf = good_but("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8"));
        let e = err(&buf);
        assert_eq!(e, HandshakeError::UnsupportedVersion);
        assert_eq!(e.status(), 426);
        assert_eq!(e.label(), "unsupported_version");
        let buf = request_with("Sec-WebSocket-Version: 8\r\n");
        assert_eq!(err(&buf), HandshakeError::UnsupportedVersion);
    }

    #[test]
    fn missing_version_is_426() {
        assert_eq!(
            err(&good_but("Sec-WebSocket-Version", None)),
            HandshakeError::UnsupportedVersion
        );
    }

    #[test]
    fn non_upgrade_with_bad_version_is_400_not_426() {
        let buf = raw("GET / HTTP/1.1", &["Host: h", "Sec-WebSocket-Version: 8"]);
        assert_eq!(err(&buf).status(), 400);
    }

    #[test]
    fn rejects_post() {
        let buf = raw("POST /ws HTTP/1.1", &GOOD);
        assert_eq!(err(&buf), HandshakeError::BadRequest("method must be GET"));
        let buf = raw("get /ws HTTP/1.1", &GOOD);
        assert_eq!(err(&buf), HandshakeError::BadRequest("method must be GET"));
    }

    #[test]
    fn rejects_http_1_0() {
        let buf = raw("GET /ws HTTP/1.0", &GOOD);
        assert_eq!(
            err(&buf),
            HandshakeError::BadRequest("HTTP version must be 1.1")
        );
    }

    #[test]
    fn rejects_targets_that_are_not_paths() {
        for line in [
            "GET * HTTP/1.1",
            "GET http://h/ws HTTP/1.1",
            "GET ?a HTTP/1.1",
        ] {
            assert_eq!(
                err(&raw(line, &GOOD)),
                HandshakeError::BadRequest("invalid request target")
            );
        }
    }

    #[test]
    fn rejects_malformed_requests() {
        for buf in [
            &b"\x00GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert_eq!(
                outcome(buf),
                Err(HandshakeError::BadRequest("malformed request"))
            );
        }
    }

    #[test]
    fn rejects_non_utf8_exposed_values() {
        let mut buf = request_with("Sec-WebSocket-Protocol: ab\r\n");
        let at = buf.windows(2).position(|w| w == b"ab").unwrap();
        buf[at] = 0xc3;
        buf[at + 1] = 0x28;
        assert_eq!(
            err(&buf),
            HandshakeError::BadRequest("header value is not UTF-8")
        );
        let mut buf = request_with("Origin: ab\r\n");
        let at = buf.windows(2).position(|w| w == b"ab").unwrap();
        buf[at] = 0xff;
        assert_eq!(err(&buf), HandshakeError::BadRequest("invalid Origin"));
    }

    #[test]
    fn nine_kib_of_headers_is_431() {
        let filler = format!("X-Filler: {}\r\n", "a".repeat(9 * 1024));
        let buf = request_with(&filler);
        assert_eq!(err(&buf), HandshakeError::HeadersTooLarge);
        assert_eq!(HandshakeError::HeadersTooLarge.status(), 431);
        // Still incomplete but already over the limit: 431 without waiting for the end.
        assert_eq!(err(&buf[..9 * 1024]), HandshakeError::HeadersTooLarge);
        // The limit is the caller's.
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let limits = HandshakeLimits {
            max_head_bytes: 16 * 1024,
        };
        assert!(matches!(parse_request(&buf, &mut hs, &limits), Ok(Some(_))));
    }

    #[test]
    fn head_exactly_at_the_limit_is_accepted() {
        let buf = request_with("");
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let limits = HandshakeLimits {
            max_head_bytes: buf.len(),
        };
        assert!(matches!(parse_request(&buf, &mut hs, &limits), Ok(Some(_))));
        let limits = HandshakeLimits {
            max_head_bytes: buf.len() - 1,
        };
        assert_eq!(
            parse_request(&buf, &mut hs, &limits).err(),
            Some(HandshakeError::HeadersTooLarge)
        );
    }

    #[test]
    fn two_hundred_headers_is_431() {
        let extra: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(err(&request_with(&extra)), HandshakeError::HeadersTooLarge);
    }

    #[test]
    fn byte_by_byte_is_incomplete_until_complete() {
        for full in [
            CHROME,
            FIREFOX,
            &request_with("Sec-WebSocket-Version: 8\r\n")[..],
        ] {
            let expected = outcome(full);
            for end in 0..full.len() {
                assert_eq!(outcome(&full[..end]), Ok(None), "prefix of {end} bytes");
            }
            assert_eq!(outcome(full), expected);
        }
        // The same for an over-long head: incomplete until over the limit, then 431.
        let long = request_with(&format!("X-Filler: {}\r\n", "a".repeat(9000)));
        let limit = HandshakeLimits::default().max_head_bytes;
        for end in 0..long.len() {
            let want = if end > limit {
                Err(HandshakeError::HeadersTooLarge)
            } else {
                Ok(None)
            };
            assert_eq!(outcome(&long[..end]), want, "prefix of {end} bytes");
        }
        assert_eq!(outcome(&long), Err(HandshakeError::HeadersTooLarge));
    }

    #[test]
    fn error_status_reason_and_label() {
        let cases = [
            (HandshakeError::BadRequest("x"), 400, "x", "bad_request"),
            (
                HandshakeError::UnsupportedVersion,
                426,
                "unsupported WebSocket version",
                "unsupported_version",
            ),
            (
                HandshakeError::HeadersTooLarge,
                431,
                "request header fields too large",
                "headers_too_large",
            ),
        ];
        for (e, status, reason, label) in cases {
            assert_eq!((e.status(), e.reason(), e.label()), (status, reason, label));
        }
    }

    #[test]
    fn write_accept_answer() {
        let mut out = b"prefix".to_vec();
        write_accept("dGhlIHNhbXBsZSBub25jZQ==", None, None, &mut out);
        assert_eq!(
            out,
            b"prefixHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let mut out = Vec::new();
        write_accept(
            "dGhlIHNhbXBsZSBub25jZQ==",
            Some("chat"),
            Some("x-foo\r\nX: y"),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: x-fooX: y\r\n\r\n"
        ));
    }

    #[test]
    fn write_reject_answers() {
        let mut out = Vec::new();
        write_reject(400, "missing Host", &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\
              Connection: close\r\n\r\nmissing Host\n"
        );
        let mut out = Vec::new();
        write_reject(426, "unsupported WebSocket version", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        for (status, phrase) in [
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
            (418, "Error"),
        ] {
            let mut out = Vec::new();
            write_reject(status, "r", &mut out);
            let line = format!("HTTP/1.1 {status} {phrase}\r\n");
            assert!(out.starts_with(line.as_bytes()), "{status}");
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("Sec-WebSocket-Version"));
            // Only a 401 carries the authentication challenge.
            assert_eq!(
                text.contains("\r\nWWW-Authenticate: Bearer realm=\"corecast\"\r\n"),
                status == 401,
                "{text}"
            );
        }
        let mut out = Vec::new();
        write_reject(7, "r", &mut out);
        assert!(out.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
    }

    #[test]
    fn write_reject_strips_header_injection() {
        let mut out = Vec::new();
        write_reject(403, "no\r\nSet-Cookie: a=b\r\n\r\nx", &mut out);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("Set-Cookie"));
        assert_eq!(body, "noSet-Cookie: a=bx\n");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn list_items_split_on_top_level_commas() {
        let items = |s| ListItems::new(s).collect::<Vec<_>>();
        assert_eq!(items(""), Vec::<&str>::new());
        assert_eq!(items(" , ,\t"), Vec::<&str>::new());
        assert_eq!(items("a"), ["a"]);
        assert_eq!(items(" a ,b,\tc\t"), ["a", "b", "c"]);
        assert_eq!(items("a; p=\"x,y\", b"), ["a; p=\"x,y\"", "b"]);
        // An unterminated quote runs to the end of the value.
        assert_eq!(items("a, b=\"x, y"), ["a", "b=\"x, y"]);
        assert_eq!(items("é, ü"), ["é", "ü"]);
    }
}
