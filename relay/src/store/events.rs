//! What the database announces to every relay node sharing it (PostgreSQL's `LISTEN
//! relay_events`): changes a node must act on at once although another node, or a
//! command, made them. Payloads carry keys only, never a token or secret.

/// The channel the announcements go on.
pub const CHANNEL: &str = "relay_events";

/// Something changed in the shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// OAuth access or refresh tokens were revoked: forget cached token checks.
    TokensRevoked,
    /// A bridge token (this row id) was revoked: disconnect its bridges.
    BridgeTokenRevoked(i64),
    /// A tunnel name was released: forget its cached owner.
    NameReleased(String),
    /// An authorization for `tunnel` waits for its owner: the node holding the tunnel's
    /// bridge prompts it.
    ConsentWaiting {
        /// The tunnel.
        tunnel: String,
        /// The consent's id.
        id: String,
    },
    /// Node `node` gets requests for `tunnel` (the load balancer sends them there now) but
    /// does not hold its bridge: the node holding it hands it over (finishes the tunnel's
    /// exchanges, then closes the bridge's connection, which reconnects through the load
    /// balancer).
    Want {
        /// The tunnel.
        tunnel: String,
        /// The node that wants it.
        node: String,
    },
    /// A bridge connecting to node `from` claims `tunnel`, whose bridge node `holder`
    /// holds, with bridge token `token`: the holder probes its connection and answers
    /// with [`Event::Probed`] (the rule of a second connection on one node, across nodes).
    Probe {
        /// The tunnel.
        tunnel: String,
        /// The node the newcomer connected to.
        from: String,
        /// The node the store says holds the tunnel.
        holder: String,
        /// The newcomer's bridge token (row id).
        token: i64,
    },
    /// The holder's answers to [`Event::Probe`] from node `node`.
    Probed {
        /// The tunnel.
        tunnel: String,
        /// The node that asked.
        node: String,
        /// What the holder says.
        answer: ProbeAnswer,
    },
    /// The node's listener (re)connected: announcements may have been missed, so check
    /// everything again.
    Resync,
}

impl Event {
    /// The payload announcing it (`Resync` is never announced: each node makes its own).
    pub fn payload(&self) -> String {
        match self {
            Self::TokensRevoked => "tokens".into(),
            Self::BridgeTokenRevoked(id) => format!("bridge_revoked:{id}"),
            Self::NameReleased(name) => format!("name_released:{name}"),
            Self::ConsentWaiting { tunnel, id } => format!("consent:{tunnel}:{id}"),
            Self::Want { tunnel, node } => format!("want:{tunnel}:{node}"),
            Self::Probe {
                tunnel,
                from,
                holder,
                token,
            } => format!("probe:{tunnel}:{from}:{holder}:{token}"),
            Self::Probed {
                tunnel,
                node,
                answer,
            } => format!("probed:{tunnel}:{node}:{}", answer.word()),
            Self::Resync => "resync".into(),
        }
    }

    /// The event of a payload; `None` for one this node does not know (a newer node's).
    pub fn parse(payload: &str) -> Option<Self> {
        match payload.split_once(':') {
            None if payload == "tokens" => Some(Self::TokensRevoked),
            Some(("bridge_revoked", id)) => id.parse().ok().map(Self::BridgeTokenRevoked),
            Some(("name_released", name)) if protocol::valid_tunnel_name(name) => {
                Some(Self::NameReleased(name.to_owned()))
            }
            Some(("want", rest)) => match rest.split_once(':') {
                Some((tunnel, node)) if protocol::valid_tunnel_name(tunnel) && is_node(node) => {
                    Some(Self::Want {
                        tunnel: tunnel.to_owned(),
                        node: node.to_owned(),
                    })
                }
                _ => None,
            },
            Some(("probe", rest)) => {
                let mut parts = rest.split(':');
                let (tunnel, from, holder, token) = (
                    parts.next()?,
                    parts.next()?,
                    parts.next()?,
                    parts.next()?.parse().ok()?,
                );
                (parts.next().is_none()
                    && protocol::valid_tunnel_name(tunnel)
                    && is_node(from)
                    && is_node(holder))
                .then(|| Self::Probe {
                    tunnel: tunnel.to_owned(),
                    from: from.to_owned(),
                    holder: holder.to_owned(),
                    token,
                })
            }
            Some(("probed", rest)) => {
                let mut parts = rest.split(':');
                let (tunnel, node) = (parts.next()?, parts.next()?);
                let answer = ProbeAnswer::from_word(parts.next()?)?;
                (parts.next().is_none() && protocol::valid_tunnel_name(tunnel) && is_node(node))
                    .then(|| Self::Probed {
                        tunnel: tunnel.to_owned(),
                        node: node.to_owned(),
                        answer,
                    })
            }
            Some(("consent", rest)) => match rest.split_once(':') {
                Some((tunnel, id))
                    if protocol::valid_tunnel_name(tunnel)
                        && !id.is_empty()
                        && id.len() <= 64
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    Some(Self::ConsentWaiting {
                        tunnel: tunnel.to_owned(),
                        id: id.to_owned(),
                    })
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// What the node holding a tunnel says of a probe of its bridge's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// It holds the tunnel and is probing its connection (the final answer follows).
    Probing,
    /// The connection answered: the newcomer is refused.
    Live,
    /// It does not hold the tunnel, or its connection stayed silent and was closed: the
    /// newcomer takes over.
    Gone,
}

impl ProbeAnswer {
    fn word(self) -> &'static str {
        match self {
            Self::Probing => "probing",
            Self::Live => "live",
            Self::Gone => "gone",
        }
    }

    fn from_word(w: &str) -> Option<Self> {
        [Self::Probing, Self::Live, Self::Gone]
            .into_iter()
            .find(|a| a.word() == w)
    }
}

/// Whether `s` is a node id as `--node-id` makes them.
fn is_node(s: &str) -> bool {
    crate::config::node::clean_node_id(s).as_deref() == Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_unknown_ones_are_ignored() {
        for e in [
            Event::TokensRevoked,
            Event::BridgeTokenRevoked(42),
            Event::NameReleased("files".into()),
            Event::ConsentWaiting {
                tunnel: "files".into(),
                id: "Abc_d-9".into(),
            },
            Event::Want {
                tunnel: "files".into(),
                node: "relay-2.eu".into(),
            },
            Event::Probe {
                tunnel: "files".into(),
                from: "r1".into(),
                holder: "r2".into(),
                token: 7,
            },
            Event::Probed {
                tunnel: "files".into(),
                node: "r1".into(),
                answer: ProbeAnswer::Probing,
            },
            Event::Probed {
                tunnel: "files".into(),
                node: "r1".into(),
                answer: ProbeAnswer::Live,
            },
            Event::Probed {
                tunnel: "files".into(),
                node: "r1".into(),
                answer: ProbeAnswer::Gone,
            },
        ] {
            assert_eq!(Event::parse(&e.payload()), Some(e));
        }
        for odd in [
            "resync",
            "",
            "bridge_revoked:x",
            "name_released:../etc",
            "something_new:1",
            "consent:files:",
            "consent:files:a b",
            "consent:bad name:x",
            "want:files:bad node",
            "probe:files:r1:r2",
            "probe:files:r1:r2:x",
            "probe:files:r1:r2:7:extra",
            "probed:files:r1:1",
            "probed:files:r 1:live",
            "probed:files:r1:live:x",
        ] {
            assert_eq!(Event::parse(odd), None, "{odd}");
        }
    }
}
