//! The HTTP/1.1 upgrade handshake (RFC 6455 4.2): parse the request from a byte buffer,
//! validate it, and write the `101` answer or a rejection.
//!
//! Incomplete input consumes nothing (`Ok(None)`). No I/O and no allocation while parsing:
//! the request borrows from the caller's buffer and header array.

/// The GUID appended to the client key before hashing (RFC 6455 1.3).
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Limits on the upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Largest request head in bytes (request line and headers); over it: 431.
    pub max_head_bytes: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits { max_head_bytes: 8 * 1024 }
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
        todo!()
    }

    /// A short human-readable reason, sent as the response body.
    pub fn reason(&self) -> &'static str {
        todo!()
    }

    /// A stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        todo!()
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
        let _ = (name, self.headers);
        todo!()
    }

    /// All headers in order, as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The subprotocols the client offered, in its order (from every
    /// `Sec-WebSocket-Protocol` header, comma-separated, trimmed, empty items skipped).
    pub fn protocols(&self) -> impl Iterator<Item = &'b str> + '_ {
        std::iter::empty()
    }

    /// The extension offers (`Sec-WebSocket-Extensions` items), in order, unparsed.
    pub fn extensions(&self) -> impl Iterator<Item = &'b str> + '_ {
        std::iter::empty()
    }
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
    let _ = (buf, headers, limits);
    todo!()
}

/// The `Sec-WebSocket-Accept` value for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let _ = key;
    todo!()
}

/// Choose the subprotocol: the first one the client offered that the server supports.
pub fn select_protocol<'b>(
    offered: impl Iterator<Item = &'b str>,
    supported: &[String],
) -> Option<&'b str> {
    let _ = (offered, supported);
    todo!()
}

/// Append the `101 Switching Protocols` answer.
pub fn write_accept(key: &str, protocol: Option<&str>, extensions: Option<&str>, out: &mut Vec<u8>) {
    let _ = (key, protocol, extensions, out);
    todo!()
}

/// Append a rejection: status line, `Connection: close`, a plain-text body with the reason,
/// and `Sec-WebSocket-Version: 13` when the status is 426.
pub fn write_reject(status: u16, reason: &str, out: &mut Vec<u8>) {
    let _ = (status, reason, out);
    todo!()
}
