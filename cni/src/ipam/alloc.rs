//! Address ranges and the choice of the next free address (pure logic).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// One allocatable range inside a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet (no host bits).
    pub subnet: IpNetwork,
    /// First allocatable address.
    pub start: IpAddr,
    /// Last allocatable address.
    pub end: IpAddr,
    /// The gateway (never handed out).
    pub gateway: Option<IpAddr>,
}

/// Ranges one address is taken from (first free wins, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

/// An address as a number.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A number back as an address of the same family as `like`.
pub fn from_u128(n: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(n.into()),
    }
}

impl Range {
    /// Build a range from a subnet and optional bounds, applying
    /// host-local's defaults (start after the network address, end before
    /// broadcast for IPv4, gateway = first address) and checking bounds.
    pub fn new(
        subnet: IpNetwork,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Range, String> {
        if subnet.network() != subnet.ip() {
            return Err(format!("subnet {subnet}: has host bits set"));
        }
        let bits = if subnet.is_ipv4() { 32 } else { 128 };
        if bits - subnet.prefix() < 2 {
            return Err(format!("subnet {subnet}: too small to allocate from"));
        }
        let net = to_u128(subnet.network());
        let last = net + ((1u128 << (bits - subnet.prefix()) as u32) - 1);
        let gateway = Some(gateway.unwrap_or_else(|| from_u128(net + 1, subnet.ip())));
        let in_subnet = |ip: IpAddr| subnet.contains(ip) && ip.is_ipv4() == subnet.is_ipv4();
        let start = match start {
            Some(s) if !in_subnet(s) => {
                return Err(format!("rangeStart {s}: not in subnet {subnet}"));
            }
            Some(s) => s,
            None => from_u128(net + 1, subnet.ip()),
        };
        let end = match end {
            Some(e) if !in_subnet(e) => {
                return Err(format!("rangeEnd {e}: not in subnet {subnet}"));
            }
            Some(e) => e,
            // IPv4 excludes the broadcast address.
            None => from_u128(if subnet.is_ipv4() { last - 1 } else { last }, subnet.ip()),
        };
        if to_u128(start) > to_u128(end) {
            return Err(format!("rangeStart {start} is after rangeEnd {end}"));
        }
        if let Some(g) = gateway {
            if !in_subnet(g) {
                return Err(format!("gateway {g}: not in subnet {subnet}"));
            }
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// Whether `ip` is allocatable from this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.subnet.is_ipv4()
            && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.subnet.is_ipv4() == o.subnet.is_ipv4()
            && to_u128(self.start) <= to_u128(o.end)
            && to_u128(o.start) <= to_u128(self.end)
    }
}

impl RangeSet {
    /// Check that the set is non-empty, one family, and has no overlaps.
    pub fn validate(&self) -> Result<(), String> {
        let Some(first) = self.0.first() else {
            return Err("range set is empty".into());
        };
        for (i, r) in self.0.iter().enumerate() {
            if r.subnet.is_ipv4() != first.subnet.is_ipv4() {
                return Err("range set mixes IPv4 and IPv6".into());
            }
            for o in &self.0[i + 1..] {
                if r.overlaps(o) {
                    return Err(format!(
                        "ranges {}-{} and {}-{} overlap",
                        r.start, r.end, o.start, o.end
                    ));
                }
            }
        }
        Ok(())
    }

    /// The range `ip` belongs to.
    pub fn range_of(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    /// The next free address after `last` (round-robin, as host-local does),
    /// skipping gateways and addresses for which `taken` is true.
    pub fn next_free(
        &self,
        last: Option<IpAddr>,
        mut taken: impl FnMut(IpAddr) -> bool,
    ) -> Option<(IpAddr, &Range)> {
        // Start at the address after `last` when it is still in a range.
        let (start_ri, start_off) = last
            .and_then(|l| {
                self.0
                    .iter()
                    .position(|r| r.contains(l))
                    .map(|ri| (ri, to_u128(l) - to_u128(self.0[ri].start) + 1))
            })
            .unwrap_or_default();
        let n = self.0.len();
        // Visit start_ri from start_off, the other ranges fully, then the
        // beginning of start_ri.
        for step in 0..=n {
            let ri = (start_ri + step) % n;
            let r = &self.0[ri];
            let size = to_u128(r.end) - to_u128(r.start) + 1;
            let (from, to) = match step {
                0 => (start_off, size),
                s if s == n => (0, start_off.min(size)),
                _ => (0, size),
            };
            for off in from..to {
                let ip = from_u128(to_u128(r.start) + off, r.start);
                if Some(ip) == r.gateway || taken(ip) {
                    continue;
                }
                return Some((ip, r));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn r(subnet: &str) -> Range {
        Range::new(subnet.parse().unwrap(), None, None, None).unwrap()
    }

    #[test]
    fn defaults_follow_host_local() {
        let x = r("10.22.0.0/24");
        assert_eq!(x.start, ip("10.22.0.1"));
        assert_eq!(x.end, ip("10.22.0.254"));
        assert_eq!(x.gateway, Some(ip("10.22.0.1")));
    }

    #[test]
    fn rejects_bad_ranges() {
        let n: IpNetwork = "10.22.0.5/24".parse().unwrap();
        assert!(
            Range::new(n, None, None, None)
                .unwrap_err()
                .contains("host bits")
        );
        let n: IpNetwork = "10.22.0.0/24".parse().unwrap();
        assert!(
            Range::new(n, Some(ip("10.23.0.1")), None, None)
                .unwrap_err()
                .contains("rangeStart")
        );
        assert!(Range::new(n, Some(ip("10.22.0.9")), Some(ip("10.22.0.3")), None).is_err());
        assert!(Range::new("10.0.0.0/31".parse().unwrap(), None, None, None).is_err());
        let set = RangeSet(vec![r("10.22.0.0/24"), r("10.22.0.0/25")]);
        assert!(set.validate().unwrap_err().contains("overlap"));
        let set = RangeSet(vec![r("10.22.0.0/24"), r("fd00::/64")]);
        assert!(set.validate().is_err());
    }

    #[test]
    fn allocates_in_order_skipping_gateway_and_taken() {
        let set = RangeSet(vec![r("10.22.0.0/29")]);
        let taken = [ip("10.22.0.3")];
        let (a, _) = set.next_free(None, |x| taken.contains(&x)).unwrap();
        assert_eq!(a, ip("10.22.0.2"));
        let (b, _) = set
            .next_free(Some(a), |x| taken.contains(&x) || x == a)
            .unwrap();
        assert_eq!(b, ip("10.22.0.4"));
    }

    #[test]
    fn wraps_round_robin_and_exhausts() {
        let set = RangeSet(vec![r("10.22.0.0/29")]); // .2 - .6 allocatable
        let (a, _) = set.next_free(Some(ip("10.22.0.6")), |_| false).unwrap();
        assert_eq!(a, ip("10.22.0.2"));
        let mut used = vec![];
        while let Some((x, _)) = set.next_free(used.last().copied(), |x| used.contains(&x)) {
            used.push(x);
        }
        assert_eq!(used.len(), 5);
        assert!(set.next_free(None, |x| used.contains(&x)).is_none());
    }

    #[test]
    fn spills_into_next_range() {
        let a = Range::new(
            "10.1.0.0/24".parse().unwrap(),
            Some(ip("10.1.0.10")),
            Some(ip("10.1.0.11")),
            None,
        )
        .unwrap();
        let b = r("10.2.0.0/24");
        let set = RangeSet(vec![a, b]);
        set.validate().unwrap();
        let used = [ip("10.1.0.10"), ip("10.1.0.11")];
        let (x, rr) = set.next_free(None, |x| used.contains(&x)).unwrap();
        assert_eq!(x, ip("10.2.0.2"));
        assert_eq!(rr.subnet.to_string(), "10.2.0.0/24");
    }

    #[test]
    fn ipv6_range() {
        let set = RangeSet(vec![r("fd00:1::/120")]);
        let (x, _) = set.next_free(None, |_| false).unwrap();
        assert_eq!(x, ip("fd00:1::2"));
        assert_eq!(set.0[0].end, ip("fd00:1::ff"));
    }
}
