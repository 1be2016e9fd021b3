//! What the relay remembers of the bridges that held each tunnel: the version each one
//! announced and the newest takeover attempts. The bridge socket writes it; the owner's
//! status page reads it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use protocol::sync::LockExt;

/// Takeover attempts and replacements kept per tunnel.
const TAKEOVERS_KEPT: usize = 20;

/// A bridge claiming a tunnel name whose connection was registered: refused because the
/// connected bridge answered the relay's probe, or replacing it because it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Whether the newcomer replaced the connection (else it was refused).
    pub replaced: bool,
    /// The newcomer's address.
    pub from: String,
    /// The address of the connection it claimed the name from.
    pub holder: String,
}

/// Per tunnel: the bridge's announced version and its takeover history.
#[derive(Default)]
pub struct BridgeHistory {
    /// The version each tunnel's bridge announced.
    versions: Mutex<HashMap<String, String>>,
    /// Each tunnel's newest takeover attempts and replacements (names a token claimed).
    takeovers: Mutex<HashMap<String, VecDeque<Takeover>>>,
}

impl BridgeHistory {
    /// Notes the version a tunnel's bridge announced when it connected.
    pub fn bridge_connected(&self, tunnel: &str, version: &str) {
        let version = protocol::text::printable(version, 64);
        self.versions.locked().insert(tunnel.to_owned(), version);
    }

    /// Notes a bridge claiming a tunnel whose connection was registered: `replaced` when
    /// the connection did not answer and the newcomer took its place, else the newcomer
    /// was refused.
    pub fn takeover(&self, tunnel: &str, replaced: bool, from: IpAddr, holder: IpAddr) {
        let at_ms = protocol::time::now_ms();
        let mut all = self.takeovers.locked();
        let list = all.entry(tunnel.to_owned()).or_default();
        if list.len() >= TAKEOVERS_KEPT {
            list.pop_back();
        }
        list.push_front(Takeover {
            at_ms,
            replaced,
            from: from.to_string(),
            holder: holder.to_string(),
        });
    }

    /// The version each tunnel's bridge announced.
    pub fn versions(&self) -> HashMap<String, String> {
        self.versions.locked().clone()
    }

    /// Each tunnel's takeover history, newest first.
    pub fn takeovers(&self) -> HashMap<String, VecDeque<Takeover>> {
        self.takeovers.locked().clone()
    }
}
