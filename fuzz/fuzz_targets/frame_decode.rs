//! `Frame::decode` on arbitrary bytes, under tiny and default [`Limits`].
//!
//! Properties checked on every input:
//!
//! - decoding never panics, whatever the bytes and the limits;
//! - a frame that decodes re-encodes to exactly the same bytes (the format is canonical),
//!   and those bytes decode again to an equal frame;
//! - limits are monotonic: a frame accepted under a small body limit is accepted, equal,
//!   under the default limits, and a frame accepted under the default limits is accepted
//!   under a small limit exactly when all its bodies fit in it;
//! - the same input, read as a structured frame through `arbitrary`, encodes to bytes that
//!   decode (the encoder never produces an undecodable frame) and round-trip stably.

#![no_main]

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol::frame::{MAX_ASSET_HEADERS, MAX_STRING};
use protocol::{
    AssetRequest, AssetResponse, BridgeStatus, ClientAuth, Frame, Hello, Limits, Refusal,
    RefuseReason, Request, RequestKind, Response, Snapshot, Welcome,
};

/// Body limits the raw bytes are decoded under, smallest first.
const SMALL_LIMITS: [Limits; 2] = [Limits { max_body: 0 }, Limits { max_body: 16 }];

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    let default = Limits::default();
    let decoded = Frame::decode(buf.clone(), &default);
    if let Ok(frame) = &decoded {
        check_round_trip(frame, data, &default);
    }
    for small in SMALL_LIMITS {
        match Frame::decode(buf.clone(), &small) {
            Ok(frame) => {
                check_round_trip(&frame, data, &small);
                assert_eq!(
                    decoded.as_ref().ok(),
                    Some(&frame),
                    "accepted under {small:?} but not (or differently) under the defaults"
                );
            }
            Err(_) => {
                if let Ok(frame) = &decoded {
                    assert!(
                        largest_body(frame) > small.max_body,
                        "{frame:?} decodes under the defaults and fits {small:?}, \
                         yet is refused under it"
                    );
                }
            }
        }
    }

    let mut u = Unstructured::new(data);
    if let Ok(frame) = arbitrary_frame(&mut u) {
        check_encoder(&frame);
    }
});

/// A decoded frame re-encodes to its input bytes, which decode to the same frame.
fn check_round_trip(frame: &Frame, input: &[u8], limits: &Limits) {
    let encoded = frame.encode();
    assert_eq!(
        &encoded[..],
        input,
        "re-encoding {frame:?} does not give back the decoded bytes"
    );
    let again = Frame::decode(encoded, limits)
        .unwrap_or_else(|e| panic!("re-encoded {frame:?} no longer decodes: {e}"));
    assert_eq!(&again, frame, "decode(encode(frame)) differs");
}

/// Any frame the encoder is given (even one with over-long strings, which it cuts)
/// decodes under the default limits, and that decoded frame round-trips exactly.
fn check_encoder(frame: &Frame) {
    let limits = Limits::default();
    let encoded = frame.encode();
    let decoded = Frame::decode(encoded.clone(), &limits)
        .unwrap_or_else(|e| panic!("the encoding of {frame:?} does not decode: {e}"));
    if !has_long_string(frame) {
        assert_eq!(&decoded, frame, "encode/decode changed the frame");
    }
    assert_eq!(decoded.encode(), encoded, "re-encoding is not stable");
}

/// The longest body a frame carries (0 for frames without one).
fn largest_body(frame: &Frame) -> usize {
    match frame {
        Frame::Request(r) => r.body.len(),
        Frame::Response(r) => r.body.len(),
        Frame::Snapshot(s) => s.initialize.len().max(s.tools.len()),
        Frame::AssetResponse(a) => a.body.len(),
        _ => 0,
    }
}

/// Whether some string field is longer than the wire format allows, or a header list has
/// more entries (the encoder cuts them).
fn has_long_string(frame: &Frame) -> bool {
    let long = |s: &str| s.len() > MAX_STRING;
    let long_opt = |s: &Option<String>| s.as_deref().is_some_and(long);
    let long_headers = |h: &[(String, String)]| {
        h.len() > MAX_ASSET_HEADERS || h.iter().any(|(n, v)| long(n) || long(v))
    };
    match frame {
        Frame::Hello(h) => long(&h.bridge_version) || long(&h.token) || long(&h.tunnel),
        Frame::Welcome(w) => long(&w.relay_version) || long(&w.mcp_url) || long(&w.sse_url),
        Frame::Refused(r) => long(&r.message),
        Frame::Request(r) => {
            long_opt(&r.session)
                || long_opt(&r.protocol_version)
                || long_opt(&r.last_event_id)
                || long(&r.principal)
        }
        Frame::Response(r) => long_opt(&r.session) || long_opt(&r.event_id),
        Frame::AssetRequest(a) => long(&a.path) || long_headers(&a.headers),
        Frame::AssetResponse(a) => long_headers(&a.headers),
        _ => false,
    }
}

fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
    Ok(Bytes::copy_from_slice(u.arbitrary::<&[u8]>()?))
}

/// Builds a valid frame (every enum and range within its domain) from fuzzer input.
fn arbitrary_frame(u: &mut Unstructured<'_>) -> Result<Frame> {
    Ok(match u.int_in_range(0u8..=12)? {
        0 => Frame::Hello(Hello {
            protocol: u.arbitrary()?,
            bridge_version: u.arbitrary()?,
            token: u.arbitrary()?,
            tunnel: u.arbitrary()?,
            client_auth: if u.arbitrary()? {
                ClientAuth::Bearer {
                    sha256: u.arbitrary()?,
                }
            } else {
                ClientAuth::None
            },
        }),
        1 => Frame::Welcome(Welcome {
            protocol: u.arbitrary()?,
            relay_version: u.arbitrary()?,
            mcp_url: u.arbitrary()?,
            sse_url: u.arbitrary()?,
        }),
        2 => Frame::Refused(Refusal {
            reason: *u.choose(&[
                RefuseReason::BadToken,
                RefuseReason::NameTaken,
                RefuseReason::BadName,
                RefuseReason::UnsupportedVersion,
                RefuseReason::AuthNotAllowed,
                RefuseReason::Malformed,
                RefuseReason::Busy,
            ])?,
            message: u.arbitrary()?,
        }),
        3 => Frame::Request(Request {
            exchange: u.arbitrary()?,
            kind: *u.choose(&[
                RequestKind::Post,
                RequestKind::Get,
                RequestKind::Delete,
                RequestKind::HttpSseOpen,
                RequestKind::HttpSsePost,
            ])?,
            session: u.arbitrary()?,
            protocol_version: u.arbitrary()?,
            last_event_id: u.arbitrary()?,
            principal: u.arbitrary()?,
            body: bytes(u)?,
        }),
        4 => Frame::Response(Response {
            exchange: u.arbitrary()?,
            status: u.int_in_range(100..=599)?,
            session: u.arbitrary()?,
            flags: u.int_in_range(0..=3)?,
            event_id: u.arbitrary()?,
            body: bytes(u)?,
        }),
        5 => Frame::Cancel {
            exchange: u.arbitrary()?,
        },
        6 => Frame::Ping(u.arbitrary()?),
        7 => Frame::Pong(u.arbitrary()?),
        8 => Frame::Snapshot(Snapshot {
            initialize: bytes(u)?,
            tools: bytes(u)?,
        }),
        9 => Frame::ServerHealth {
            // 0 is "reachable" on the wire, the same as none.
            down_since: u.arbitrary::<Option<u64>>()?.filter(|&t| t != 0),
        },
        10 => Frame::AssetRequest(AssetRequest {
            exchange: u.arbitrary()?,
            head: u.arbitrary()?,
            path: u.arbitrary()?,
            headers: u.arbitrary()?,
        }),
        11 => Frame::AssetResponse(AssetResponse {
            exchange: u.arbitrary()?,
            status: u.int_in_range(100..=599)?,
            headers: u.arbitrary()?,
            body: bytes(u)?,
        }),
        _ => Frame::Status(BridgeStatus {
            sessions: u.arbitrary()?,
            pending: u.arbitrary()?,
            exchanges: u.arbitrary()?,
            children: u.arbitrary()?,
            restarts: u.arbitrary()?,
        }),
    })
}
