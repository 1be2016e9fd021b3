//! `protocol::jsonrpc::splice` with arbitrary bodies and arbitrary non-overlapping edits.
//!
//! The edits are built from sorted cut points, so their ranges never overlap, but they may
//! be empty (insertions), touch each other, sit at either end of the body, and come in any
//! order, as `splice`'s documentation allows. Properties checked:
//!
//! - `splice` never panics;
//! - the output never contains a raw line break other than those inside replacements
//!   (so with line-free replacements, as the bridge uses, the output is one line);
//! - the output equals a straightforward model: the body with every range replaced, in
//!   position order, and the line breaks outside the ranges turned into spaces.

#![no_main]

use std::ops::Range;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use protocol::jsonrpc::splice;

/// At most this many edits per input.
const MAX_EDITS: usize = 8;

/// A body and edits to apply to it, in the order `splice` receives them. Its `Debug` form
/// is what `cargo fuzz fmt -s none splice <artifact>` prints.
#[derive(Debug)]
struct Case {
    body: Vec<u8>,
    edits: Vec<(Range<usize>, Vec<u8>)>,
}

impl<'a> Arbitrary<'a> for Case {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let body: Vec<u8> = u.arbitrary()?;
        let n = u.int_in_range(0..=MAX_EDITS)?;
        let mut cuts = Vec::with_capacity(2 * n);
        for _ in 0..2 * n {
            cuts.push(u.int_in_range(0..=body.len())?);
        }
        cuts.sort_unstable();
        let mut edits = Vec::with_capacity(n);
        for pair in cuts.chunks_exact(2) {
            let replacement: Vec<u8> = u.arbitrary()?;
            edits.push((pair[0]..pair[1], replacement));
        }
        // Any order: a Fisher–Yates shuffle driven by the input.
        for i in (1..edits.len()).rev() {
            let j = u.int_in_range(0..=i)?;
            edits.swap(i, j);
        }
        Ok(Case { body, edits })
    }
}

fn is_line_break(b: &u8) -> bool {
    *b == b'\n' || *b == b'\r'
}

/// The expected output: ranges replaced in position order (an insertion before a
/// replacement starting at the same place), line breaks outside them made spaces.
fn model(case: &Case) -> Vec<u8> {
    let mut sorted: Vec<&(Range<usize>, Vec<u8>)> = case.edits.iter().collect();
    sorted.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = Vec::new();
    let mut pos = 0;
    let outside = |part: &[u8], out: &mut Vec<u8>| {
        out.extend(
            part.iter()
                .map(|b| if is_line_break(b) { b' ' } else { *b }),
        );
    };
    for (range, replacement) in sorted {
        outside(&case.body[pos..range.start], &mut out);
        out.extend_from_slice(replacement);
        pos = range.end;
    }
    outside(&case.body[pos..], &mut out);
    out
}

/// Whether two insertions share a position (their relative order is then unspecified).
fn ambiguous(case: &Case) -> bool {
    let mut inserts: Vec<usize> = case
        .edits
        .iter()
        .filter(|(r, _)| r.is_empty())
        .map(|(r, _)| r.start)
        .collect();
    inserts.sort_unstable();
    inserts.windows(2).any(|w| w[0] == w[1])
}

fuzz_target!(|case: Case| {
    let mut edits: Vec<(Range<usize>, &[u8])> = case
        .edits
        .iter()
        .map(|(r, b)| (r.clone(), b.as_slice()))
        .collect();
    let out = splice(&case.body, &mut edits);

    let removed: usize = case.edits.iter().map(|(r, _)| r.len()).sum();
    let added: usize = case.edits.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        out.len(),
        case.body.len() - removed + added,
        "wrong output length for {case:?}"
    );
    let breaks_in_replacements: usize = case
        .edits
        .iter()
        .map(|(_, b)| b.iter().filter(|c| is_line_break(c)).count())
        .sum();
    assert_eq!(
        out.iter().filter(|c| is_line_break(c)).count(),
        breaks_in_replacements,
        "a raw line break survived outside the replacements for {case:?}"
    );
    if !ambiguous(&case) {
        assert_eq!(
            out,
            model(&case),
            "splice differs from the model for {case:?}"
        );
    }
});
