//! Which address a request came from, for the failed-login limiter and the audit trail.
//!
//! Behind a load balancer or an ingress the TCP peer is the proxy, and the client is named in
//! `X-Forwarded-For` — a header any client can also send, so it is believed only as far as
//! proxies this deployment trusts wrote it (`auth.trusted_proxies`). The walk is nginx's
//! `real_ip_recursive on` (and Rails' `remote_ip`): from the peer, right to left through the
//! header, skipping trusted addresses; the first address not trusted is the client. Each
//! trusted proxy appends the address it received the request from, so everything right of
//! the first untrusted entry was written by a trusted proxy, and everything left of it may
//! have been made up by the client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use serde::Serialize;

use super::Auth;

impl Auth {
    /// The client `request` came from, as [`TrustedProxies::client`] resolves it from its
    /// peer: the one address both the failed-login limiter and the audit trail use. `None`
    /// when the server was not started with peer addresses (tests calling the router
    /// directly).
    pub(crate) fn client_address(&self, request: &Request) -> Option<IpAddr> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()?
            .0
            .ip();
        Some(self.proxies.client(peer, request.headers()))
    }
}

/// The proxies whose `X-Forwarded-For` is believed: IP addresses and CIDR blocks, IPv4 and
/// IPv6. Empty (the default, and Lite): the header is ignored and the peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpBlock>);

/// An address block: `addr/prefix`, or one address (the full prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// `10.0.0.0/8`, `fd00::/8`, `192.0.2.7` or `::1`; a block with host bits set is refused,
    /// naming the block meant, since `10.1.0.0/8` is more likely a typo for `/16` than a wish
    /// to trust all of `10.0.0.0/8`.
    fn parse(text: &str) -> Result<Self, String> {
        let example = "an IP address or a CIDR block such as 10.0.0.0/8 or fd00::/8";
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not {example}"))?;
        let bits = max_prefix(network);
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| {
                    format!("{text:?}: the prefix length must be a number from 0 to {bits}")
                })?,
        };
        let block = Self { network, prefix };
        let masked = block.masked(network);
        if masked != network {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix; write {masked}/{prefix}"
            ));
        }
        Ok(block)
    }

    /// `address` with the bits past this block's prefix cleared.
    fn masked(&self, address: IpAddr) -> IpAddr {
        let keep = |bits: u32| -> u128 {
            if self.prefix == 0 {
                0
            } else {
                u128::MAX << (bits - u32::from(self.prefix))
            }
        };
        match address {
            IpAddr::V4(v4) => {
                let mask = keep(32) as u32;
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & keep(128)).into()),
        }
    }

    /// The block as [`IpBlock::contains`] compares: an IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) as the IPv4 address it is.
    fn to_canonical(self) -> Self {
        match self.network {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && self.prefix >= 96 => Self {
                network: v6.to_canonical(),
                prefix: self.prefix - 96,
            },
            _ => self,
        }
    }

    fn contains(&self, address: IpAddr) -> bool {
        // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`: the same host.
        let address = address.to_canonical();
        let same_family = address.is_ipv4() == self.network.is_ipv4();
        same_family && self.masked(address) == self.network
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.network) {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix)
        }
    }
}

impl TrustedProxies {
    /// The blocks `entries` name (blank entries are skipped); the first malformed one is
    /// refused with the reason.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| IpBlock::parse(entry).map(IpBlock::to_canonical))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted (`X-Forwarded-For` is ignored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(address))
    }

    /// The client of a request whose TCP peer is `peer`: the peer itself unless it is a
    /// trusted proxy; then the rightmost address of `X-Forwarded-For` (every header line, in
    /// order) that is not a trusted proxy, or its leftmost when all are. An entry that is not
    /// an address ends the walk at the last address read (or the peer): whatever a client
    /// sends, the answer is an address a trusted proxy vouched for, never an error.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for entry in forwarded_for(headers).rev() {
            let Some(address) = entry.and_then(parse_forwarded) else {
                break;
            };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// As the configuration spells it, for `--check-config`.
impl Serialize for TrustedProxies {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

/// The entries of every `X-Forwarded-For` line, leftmost first; `None` for a line that is not
/// text (it cannot be read as addresses, so the walk stops there).
fn forwarded_for(headers: &HeaderMap) -> impl DoubleEndedIterator<Item = Option<&str>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|line| match line.to_str() {
            Ok(text) => text.split(',').map(Some).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// One `X-Forwarded-For` entry as an address: `192.0.2.7`, `2001:db8::7`, and the forms some
/// proxies write with a port (`192.0.2.7:5123`, `[2001:db8::7]:5123`) or brackets
/// (`[2001:db8::7]`). Anything else (`unknown`, an obfuscated identifier, an empty entry) is
/// not an address.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        return port_ok
            .then(|| address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    let (address, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries.iter().copied()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A request's headers with one `X-Forwarded-For` line per item.
    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", line.parse().unwrap());
        }
        headers
    }

    #[test]
    fn blocks_and_addresses_of_both_families_parse_and_bad_ones_are_refused_with_the_reason() {
        let parsed = proxies(&[
            "10.0.0.0/8",
            " 192.0.2.7 ",
            "fd00::/8",
            "::1",
            "",
            "0.0.0.0/0",
        ]);
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::json!(["10.0.0.0/8", "192.0.2.7", "fd00::/8", "::1", "0.0.0.0/0"])
        );
        assert!(TrustedProxies::parse([]).unwrap().is_empty());
        for (bad, said) in [
            ("10.0.0.300", "is not an IP address or a CIDR block"),
            ("proxy.internal", "is not an IP address or a CIDR block"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("fd00::/129", "from 0 to 128"),
            ("10.0.0.0/", "from 0 to 32"),
            ("10.0.0.0/8/8", "from 0 to 32"),
            ("10.1.0.0/8", "write 10.0.0.0/8"),
            ("fd00::1/8", "write fd00::/8"),
        ] {
            let error = TrustedProxies::parse(["10.0.0.0/8", bad]).unwrap_err();
            assert!(error.contains(said), "{bad}: {error}");
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn membership_follows_the_prefix_in_both_families() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.7", "fd00::/8", "2001:db8::1"]);
        for yes in [
            "10.0.0.1",
            "10.255.255.255",
            "192.0.2.7",
            "fd12::3",
            "2001:db8::1",
        ] {
            assert!(trusted.trusts(ip(yes)), "{yes}");
        }
        for no in [
            "11.0.0.1",
            "192.0.2.8",
            "fe00::1",
            "2001:db8::2",
            "::ffff:11.0.0.1",
        ] {
            assert!(!trusted.trusts(ip(no)), "{no}");
        }
        // A dual-stack listener sees an IPv4 proxy as an IPv4-mapped IPv6 peer.
        assert!(trusted.trusts(ip("::ffff:10.1.2.3")));
        // IPv4 blocks never match IPv6 addresses by their bits, nor the other way.
        assert!(!proxies(&["0.0.0.0/0"]).trusts(ip("fd00::1")));
        assert!(!proxies(&["::/0"]).trusts(ip("10.0.0.1")));
        assert!(proxies(&["::ffff:10.0.0.0/104"]).trusts(ip("10.9.9.9")));
    }

    #[test]
    fn a_forged_header_from_a_peer_that_is_not_trusted_is_ignored() {
        let headers = forwarded(&["203.0.113.9"]);
        let peer = ip("198.51.100.4");
        assert_eq!(proxies(&["10.0.0.0/8"]).client(peer, &headers), peer);
        // No proxies (the default, and Lite): the header is never read.
        assert_eq!(TrustedProxies::default().client(peer, &headers), peer);
        let loopback = ip("127.0.0.1");
        assert_eq!(
            TrustedProxies::default().client(loopback, &headers),
            loopback
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_address() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        // One proxy: the address it received the request from.
        assert_eq!(
            trusted.client(peer, &forwarded(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
        // A client's forged entries stay left of the address the proxy saw.
        assert_eq!(
            trusted.client(peer, &forwarded(&["1.2.3.4, 203.0.113.9"])),
            ip("203.0.113.9")
        );
        // A chain of trusted proxies is walked through, over several header lines too.
        assert_eq!(
            trusted.client(
                peer,
                &forwarded(&["6.6.6.6, 203.0.113.9, 10.1.1.1", "10.2.2.2"])
            ),
            ip("203.0.113.9")
        );
        // Every address trusted: the leftmost (the first proxy's own client is internal).
        assert_eq!(
            trusted.client(peer, &forwarded(&["10.9.9.9, 10.1.1.1"])),
            ip("10.9.9.9")
        );
        // No header: the peer.
        assert_eq!(trusted.client(peer, &HeaderMap::new()), peer);
        // A proxy the deployment does not trust in the middle ends the walk there: what is
        // left of it could be anything.
        assert_eq!(
            trusted.client(peer, &forwarded(&["203.0.113.9, 198.51.100.1, 10.1.1.1"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn ipv6_clients_and_proxies_and_the_forms_with_ports() {
        let trusted = proxies(&["fd00::/8", "10.0.0.0/8"]);
        let peer = ip("fd00::2");
        assert_eq!(
            trusted.client(peer, &forwarded(&["2001:db8::9, fd00::1"])),
            ip("2001:db8::9")
        );
        assert_eq!(
            trusted.client(peer, &forwarded(&["[2001:db8::9]:4711"])),
            ip("2001:db8::9")
        );
        assert_eq!(
            trusted.client(peer, &forwarded(&["[2001:db8::9]"])),
            ip("2001:db8::9")
        );
        assert_eq!(
            trusted.client(peer, &forwarded(&["203.0.113.9:4711"])),
            ip("203.0.113.9")
        );
        // An IPv4 proxy seen through a dual-stack listener.
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.2"), &forwarded(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_malformed_entry_stops_the_walk_at_the_last_good_address() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        for (lines, client) in [
            (&["203.0.113.9, unknown, 10.1.1.1"][..], "10.1.1.1"),
            (&["203.0.113.9, unknown"][..], "10.0.0.2"),
            (&["garbage"][..], "10.0.0.2"),
            (&[""][..], "10.0.0.2"),
            (&["203.0.113.9,"][..], "10.0.0.2"),
            (&["203.0.113.9, 10.1.1.1:99999"][..], "10.0.0.2"),
            (&["203.0.113.9, [fd00::1"][..], "10.0.0.2"),
            (&["203.0.113.9, _hidden", "10.1.1.1"][..], "10.1.1.1"),
            // Bad entries left of the client do not matter: the walk stopped before them.
            (&["nonsense, 203.0.113.9"][..], "203.0.113.9"),
        ] {
            assert_eq!(
                trusted.client(peer, &forwarded(lines)),
                ip(client),
                "{lines:?}"
            );
        }
        // A line that is not even text.
        let mut headers = forwarded(&["203.0.113.9"]);
        headers.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(trusted.client(peer, &headers), peer);
    }
}
