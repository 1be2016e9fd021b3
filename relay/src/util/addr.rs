//! How addresses are counted by the per-address limits.

use std::net::{IpAddr, Ipv6Addr};

/// The key an address is counted under: IPv4 addresses (IPv4-mapped IPv6 ones too) as
/// they are, IPv6 addresses by their /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}
