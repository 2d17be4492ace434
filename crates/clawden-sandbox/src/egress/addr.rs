//! Which addresses the egress proxy may connect to: global unicast only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused, or `None` when it is global unicast.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "this network (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private (10/8)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64/10)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local or cloud metadata (169.254/16)"),
        ([172, 16, 0, 0], 12, "private (172.16/12)"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments (192.0.0/24)"),
        ([192, 0, 2, 0], 24, "documentation (192.0.2/24)"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99/24)"),
        ([192, 168, 0, 0], 16, "private (192.168/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113/24)"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved or broadcast (240/4)"),
    ];
    RANGES.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

fn v6(s: &str) -> Ipv6Addr {
    // Only called on the constant literals below.
    s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // Every form that embeds an IPv4 address is refused outright: the proxy connects to IPv4
    // destinations as IPv4, after checking them, so these spellings only serve to hide one.
    if in_v6(ip, v6("::ffff:0:0"), 96) {
        return Some("IPv4-mapped IPv6 (::ffff:0:0/96)");
    }
    if in_v6(ip, v6("::"), 96) {
        return Some("IPv4-compatible IPv6 (::/96)");
    }
    if in_v6(ip, v6("64:ff9b::"), 96) || in_v6(ip, v6("64:ff9b:1::"), 48) {
        return Some("NAT64 (64:ff9b::/96)");
    }
    if in_v6(ip, v6("2002::"), 16) {
        let o = ip.octets();
        if forbidden_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5])).is_some() {
            return Some("6to4 embedding a non-global IPv4 address (2002::/16)");
        }
    }
    const RANGES: &[(&str, u32, &str)] = &[
        ("100::", 64, "discard-only (100::/64)"),
        ("2001::", 32, "Teredo (2001::/32)"),
        ("2001:2::", 48, "benchmarking (2001:2::/48)"),
        ("2001:10::", 28, "ORCHID (2001:10::/28)"),
        ("2001:20::", 28, "ORCHIDv2 (2001:20::/28)"),
        ("2001:db8::", 32, "documentation (2001:db8::/32)"),
        ("3fff::", 20, "documentation (3fff::/20)"),
        ("fc00::", 7, "unique local, includes fd00:ec2::254 metadata (fc00::/7)"),
        ("fe80::", 10, "link-local (fe80::/10)"),
        ("fec0::", 10, "site-local (fec0::/10)"),
        ("ff00::", 8, "multicast (ff00::/8)"),
    ];
    if let Some((_, _, why)) = RANGES.iter().find(|(net, prefix, _)| in_v6(ip, v6(net), *prefix)) {
        return Some(why);
    }
    if !in_v6(ip, v6("2000::"), 3) {
        return Some("not global unicast (outside 2000::/3)");
    }
    None
}

/// Parses an IPv4 literal the way `inet_aton` (and so many resolvers and HTTP clients) does:
/// one to four parts, each decimal, octal (leading `0`) or hex (`0x`). Used to recognise a
/// host that *is* an address in any spelling (`2130706433`, `0x7f.1`, `0177.0.0.1`).
pub fn parse_ipv4_loose(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        let n = if digits.is_empty() { 0 } else { u64::from_str_radix(digits, radix).ok()? };
        nums.push(n);
    }
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let room = 8 * (4 - init.len() as u32);
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let mut value: u64 = 0;
    for (i, n) in init.iter().enumerate() {
        value |= n << (24 - 8 * i as u32);
    }
    value |= last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// The address a host string spells, if it is a literal in any accepted form (IPv6 in
/// brackets or not, with or without a zone, or an IPv4 literal in any `inet_aton` form).
pub fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.split('%').next().unwrap_or(h);
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip);
    }
    parse_ipv4_loose(h).map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        let ip = parse_ip_literal(s).unwrap_or_else(|| panic!("not parsed: {s}"));
        forbidden_reason(ip).is_some()
    }

    #[test]
    fn every_non_global_ipv4_range_is_refused() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(refused(s), "{s} should be refused");
        }
    }

    #[test]
    fn global_ipv4_is_allowed_next_to_the_edges() {
        for s in
            ["1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "93.184.216.34"]
        {
            assert!(!refused(s), "{s} should be allowed");
        }
    }

    #[test]
    fn loopback_and_metadata_are_refused_in_every_spelling() {
        for s in [
            "2130706433",       // decimal 127.0.0.1
            "0x7f000001",       // hex
            "0x7f.0x0.0x0.0x1", // hex parts
            "0177.0.0.1",       // octal
            "017700000001",     // octal whole
            "127.1",            // two parts
            "127.0.1",          // three parts
            "2852039166",       // decimal 169.254.169.254
            "0xa9fea9fe",       // hex 169.254.169.254
            "0251.0376.0251.0376",
            "0", // 0.0.0.0
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "[::ffff:169.254.169.254]",
            "::ffff:a9fe:a9fe",
            "::127.0.0.1",
            "::1",
            "[::1]",
            "::",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:0a00:0001::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1%eth0",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "100::1",
            "3fff::1",
        ] {
            assert!(refused(s), "{s} should be refused");
        }
    }

    #[test]
    fn global_ipv6_is_allowed() {
        for s in ["2606:4700:4700::1111", "2a00:1450:4001::200e", "2002:0808:0808::1"] {
            assert!(!refused(s), "{s} should be allowed");
        }
    }

    #[test]
    fn loose_parsing_matches_inet_aton() {
        assert_eq!(parse_ipv4_loose("2130706433"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_ipv4_loose("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_ipv4_loose("10.1.256"), Some(Ipv4Addr::new(10, 1, 1, 0)));
        assert_eq!(parse_ipv4_loose("256.1.1.1"), None);
        assert_eq!(parse_ipv4_loose("08.1.1.1"), None);
        assert_eq!(parse_ipv4_loose("4294967296"), None);
        assert_eq!(parse_ipv4_loose("example"), None);
        assert_eq!(parse_ip_literal("example.com"), None);
    }
}
