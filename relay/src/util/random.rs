//! The relay's one source of randomness for secrets, codes and salts.

/// `N` bytes from the operating system's random source.
///
/// # Panics
/// When the OS gives no randomness: the relay cannot make a secret without it, and stopping
/// is the only safe answer (every secret, code and salt comes from here).
#[expect(
    clippy::expect_used,
    reason = "no secret can be made without the OS's randomness"
)]
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source");
    b
}
