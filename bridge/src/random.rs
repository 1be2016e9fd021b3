//! The bridge's one source of randomness for tokens, session ids and codes.

/// Fills `buf` from the operating system's random source.
///
/// # Panics
/// When the OS gives no randomness: no token, session id or code can be made without it,
/// and stopping is the only safe answer.
#[expect(
    clippy::expect_used,
    reason = "no secret can be made without the OS's randomness"
)]
pub fn fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source");
}

/// `N` random bytes (see [`fill`]).
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    fill(&mut b);
    b
}
