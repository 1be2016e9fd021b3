//! The bearer token of a request.

use http::{HeaderMap, header};

/// The token of an `Authorization: Bearer <token>` header, of any length; `None` when the
/// request has no such header or an empty token.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The bearer token of a request, if it is short enough to be one the relay issued (at
/// most 512 characters).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    presented(headers).filter(|t| t.len() <= 512)
}
