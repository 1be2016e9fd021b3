//! The bridge token never crosses a network in the clear: `run`, `login` and `approve`
//! refuse an `http://` relay that is not on this machine (a loopback address or
//! `localhost`), unless `BRIDGE_ALLOW_CLEARTEXT=1` says the network in between is trusted
//! (a private link that is encrypted below HTTP), and then they warn.

use tracing::warn;
use url::Url;

/// The environment variable that allows a cleartext relay off this machine.
pub const ALLOW_VAR: &str = "BRIDGE_ALLOW_CLEARTEXT";

/// Why a relay URL is refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to send the bridge token in cleartext to {relay}: use the relay's https:// URL \
     (or, only over a network you trust end to end, set {ALLOW_VAR}=1)"
)]
pub struct CleartextRelay {
    /// The relay, as given.
    pub relay: String,
}

/// Whether a token sent to `relay` would travel unencrypted beyond this machine.
pub fn exposes_token(relay: &Url) -> bool {
    matches!(relay.scheme(), "http" | "ws")
        && !protocol::net::is_loopback_host(relay.host_str().unwrap_or(""))
}

/// Refuses (or, when allowed, warns about) a relay that would receive the token in
/// cleartext over a network.
pub fn check(relay: &Url) -> Result<(), CleartextRelay> {
    check_with(relay, allowed())
}

fn allowed() -> bool {
    std::env::var(ALLOW_VAR).is_ok_and(|v| v == "1")
}

fn check_with(relay: &Url, allow: bool) -> Result<(), CleartextRelay> {
    if !exposes_token(relay) {
        return Ok(());
    }
    let shown = relay.as_str().trim_end_matches('/').to_owned();
    if allow {
        warn!(
            "{ALLOW_VAR}=1: the bridge token goes to {shown} unencrypted; anyone on the path \
             can take over this tunnel"
        );
        return Ok(());
    }
    Err(CleartextRelay { relay: shown })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_loopback_may_be_cleartext() {
        for ok in [
            "https://relay.example.com",
            "wss://relay.example.com",
            "http://127.0.0.1:7171",
            "http://127.0.0.2:8080/",
            "http://localhost:7171",
            "http://[::1]:7171",
        ] {
            assert!(check_with(&url(ok), false).is_ok(), "{ok}");
        }
        for bad in [
            "http://relay.example.com",
            "http://10.0.0.5:7171",
            "ws://192.168.1.2",
            "http://[2001:db8::1]/",
            "http://localhost.example.com",
        ] {
            let e = check_with(&url(bad), false).unwrap_err();
            assert!(e.to_string().contains("https://"), "{e}");
            assert!(
                check_with(&url(bad), true).is_ok(),
                "{bad} allowed explicitly"
            );
        }
    }
}
