//! Benchmark harness for pharox-exporter.
//!
//! The fleet (`fleet`), the inventory generator (`geninv`), the lean reference
//! checker (`lean`) and the accuracy checker (`accuracy`) share one contract,
//! kept here: which 127.x.y.z address behaves how, on which ports, with which
//! credentials. The behaviour of a fake proxy is a pure function of the
//! address it was dialled on, so the fleet needs no state and the generator
//! can write the ground truth without asking the fleet anything.

use std::net::Ipv4Addr;

/// Port of the SOCKS5 listener.
pub const PORT_SOCKS5: u16 = 1080;
/// Port of the SOCKS4/4a listener.
pub const PORT_SOCKS4: u16 = 1081;
/// Port of the HTTP proxy listener (absolute-form requests and CONNECT).
pub const PORT_HTTP: u16 = 3128;
/// A port nothing listens on: dialling it gives a true `connect_refused`.
pub const PORT_REFUSED: u16 = 1099;
/// Port of the target HTTP server on 127.0.0.1.
pub const PORT_TARGET: u16 = 8080;
/// Port of the target HTTPS server on 127.0.0.1 (a CA made at fleet start).
/// A tunnel (SOCKS or CONNECT) to this port is answered over TLS.
pub const PORT_TARGET_TLS: u16 = 8443;

/// User name that `Auth*` proxies accept.
pub const AUTH_USER: &str = "bench";
/// Password that `Auth*` proxies accept (a fake credential for a fake fleet).
pub const AUTH_PASS: &str = "s3cret";
/// Password the generator writes for `AuthBad` rows.
pub const AUTH_BAD_PASS: &str = "wrong";

/// How many consecutive second octets each behaviour owns; each octet holds
/// 65,536 addresses, so a behaviour can have up to 1.3M distinct proxies.
pub const OCTETS_PER_BEHAVIOUR: u8 = 20;

/// What a fake proxy does, chosen by the address it was dialled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    /// Handshake, then answers the GET with 200 at once.
    Healthy,
    /// Like healthy, but the answer to the GET waits `--slow-delay-ms`.
    Slow,
    /// Accepts, then closes with SO_LINGER 0 (a RST) before saying anything.
    Reset,
    /// Accepts and never answers (until the client gives up).
    Hang,
    /// Demands credentials `bench:s3cret` (SOCKS5 method 2, HTTP Basic).
    Auth,
    /// Answers the greeting with bytes that are not its protocol.
    Garbage,
    /// Refuses the destination (SOCKS5 reply 5, SOCKS4 0x5B, HTTP 403).
    DestRefused,
    /// Nobody listens: the generator gives these rows [`PORT_REFUSED`].
    Refused,
}

impl Behaviour {
    /// Every behaviour, in address order.
    pub const ALL: [Behaviour; 8] = [
        Behaviour::Healthy,
        Behaviour::Slow,
        Behaviour::Reset,
        Behaviour::Hang,
        Behaviour::Auth,
        Behaviour::Garbage,
        Behaviour::DestRefused,
        Behaviour::Refused,
    ];

    fn index(self) -> u8 {
        match self {
            Behaviour::Healthy => 0,
            Behaviour::Slow => 1,
            Behaviour::Reset => 2,
            Behaviour::Hang => 3,
            Behaviour::Auth => 4,
            Behaviour::Garbage => 5,
            Behaviour::DestRefused => 6,
            Behaviour::Refused => 7,
        }
    }

    /// The behaviour of a dialled local address; `None` for 127.0.x.x (the
    /// target lives at 127.0.0.1) and for addresses outside the scheme.
    pub fn of_addr(ip: Ipv4Addr) -> Option<Behaviour> {
        let o = ip.octets();
        if o[0] != 127 || o[1] < OCTETS_PER_BEHAVIOUR {
            return None;
        }
        let idx = o[1] / OCTETS_PER_BEHAVIOUR - 1;
        Behaviour::ALL.get(usize::from(idx)).copied()
    }

    /// The `k`-th distinct address of this behaviour (k < 20 × 65,536).
    pub fn addr(self, k: u32) -> Option<Ipv4Addr> {
        let block = k / 65_536;
        if block >= u32::from(OCTETS_PER_BEHAVIOUR) {
            return None;
        }
        let second = (u32::from(self.index()) + 1) * u32::from(OCTETS_PER_BEHAVIOUR) + block;
        let second = u8::try_from(second).ok()?;
        Some(Ipv4Addr::new(127, second, (k >> 8) as u8, k as u8))
    }

    /// Name used in the truth file and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Healthy => "healthy",
            Behaviour::Slow => "slow",
            Behaviour::Reset => "reset",
            Behaviour::Hang => "hang",
            Behaviour::Auth => "auth",
            Behaviour::Garbage => "garbage",
            Behaviour::DestRefused => "dest_refused",
            Behaviour::Refused => "refused",
        }
    }
}

/// The canned answer of the target (and of every short-circuited tunnel).
pub const TARGET_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_for_every_behaviour() {
        for b in Behaviour::ALL {
            for k in [0u32, 1, 255, 256, 65_535, 65_536, 1_000_000, 1_310_719] {
                let ip = b.addr(k).unwrap();
                assert_eq!(Behaviour::of_addr(ip), Some(b), "{b:?} {k} {ip}");
            }
            assert!(b.addr(1_310_720).is_none());
        }
        assert_eq!(Behaviour::of_addr(Ipv4Addr::LOCALHOST), None);
    }

    #[test]
    fn addresses_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for b in Behaviour::ALL {
            for k in 0..70_000 {
                assert!(seen.insert(b.addr(k).unwrap()));
            }
        }
    }
}
