//! One group of command-line flags parsed on its own, for unit tests.

use clap::{Args, Parser};

/// A command that takes only the flags `A`.
#[derive(Parser)]
pub struct Only<A: Args> {
    /// The flags.
    #[command(flatten)]
    pub flags: A,
}

/// Parses `words` (the program name left out) as the flags `A`; a parse error fails the
/// test.
pub fn parse<A: Args>(words: &[&str]) -> A {
    Only::<A>::try_parse_from(std::iter::once("bridge").chain(words.iter().copied()))
        .unwrap()
        .flags
}
