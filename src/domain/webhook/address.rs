//! Where a webhook may be sent: the endpoint URL an operator gives, and the addresses a delivery
//! must not connect to (server-side request forgery), unless private networks are allowed.
//!
//! The URL is parsed by the same parser the HTTP client uses (`url`, through reqwest), so the
//! host screened here is the host connected to: two parsers that disagree on an odd URL are how
//! forged requests slip past a check. The parser also turns the disguises of an IPv4 literal
//! (`2130706433`, `0x7f.1`) into the address itself. A host name is screened by the addresses
//! it resolves to, when connecting, so that a rebinding DNS answer cannot reach these either.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// `url::Url`, re-exported: the crate is not a direct dependency of outbound.
use reqwest::Url;

use super::WebhookError;

/// Longest endpoint URL, in characters.
pub const MAX_URL_CHARS: usize = 2048;

/// An endpoint's URL: absolute, `https` (or `http` where allowed), with a host and no user
/// name or password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    url: Url,
    ip: Option<IpAddr>,
}

impl EndpointUrl {
    /// The URL of a create request, or one read back from the store (parse it again with the
    /// current `allow_http`, so turning it off stops deliveries to plain-http endpoints).
    pub fn parse(text: &str, allow_http: bool) -> Result<Self, WebhookError> {
        let chars = text.chars().count();
        if chars > MAX_URL_CHARS {
            return Err(WebhookError::UrlTooLong(chars));
        }
        let url = Url::parse(text).map_err(|err| WebhookError::UrlMalformed(err.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            other => return Err(WebhookError::UrlScheme(other.to_owned())),
        }
        // Credentials in a URL end up in logs and listings; the signature authenticates us.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookError::UrlUserInfo);
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => unbracket(host),
            _ => return Err(WebhookError::UrlNoHost),
        };
        let ip = host.parse().ok();
        Ok(Self { url, ip })
    }

    /// The URL as sent, normalised by the parser.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The parsed URL, for the HTTP client.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The host to resolve, or the IP literal; an IPv6 literal without its brackets.
    pub fn host(&self) -> &str {
        self.url.host_str().map(unbracket).unwrap_or_default()
    }

    /// The address, when the host is one rather than a name: it is screened at once, as no
    /// resolution will happen.
    pub fn ip_literal(&self) -> Option<IpAddr> {
        self.ip
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

/// Why a delivery must not connect to `ip` unless private networks are allowed, as a class
/// name for `forbidden address (<class>)`; `None` for an address anyone may reach.
///
/// An IPv6 address that carries an IPv4 one (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`) is judged by the IPv4 address,
/// which is where a translating network would deliver it. Documentation and benchmarking
/// ranges are left alone: they reach nothing of ours.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    // Metadata services first: they sit inside the link-local and shared ranges, and are the
    // likeliest target of all, so they get their own name.
    let metadata = [
        Ipv4Addr::new(169, 254, 169, 254),
        // Alibaba Cloud's.
        Ipv4Addr::new(100, 100, 100, 200),
    ];
    if metadata.contains(&ip) {
        Some("cloud metadata")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if a == 0 {
        Some("this network")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() {
        Some("broadcast")
    // IETF protocol assignments, where Oracle Cloud's metadata service (192.0.0.192) lives.
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("protocol assignments")
    // Reserved for future use: no public host has one.
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    // AWS's metadata service over IPv6, inside the unique-local range.
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    // Unique local fc00::/7, and the deprecated site-local fec0::/10 some stacks still route.
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        Some("private")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    // Teredo 2001::/32 tunnels to an IPv4 address written obscured; refused whole.
    } else if first == 0x2001 && ip.segments()[1] == 0 {
        Some("teredo")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 one carries, for the forms a host or a translator turns into
/// IPv4 traffic.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let last = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    // IPv4-compatible ::a.b.c.d; `::` and `::1` are IPv6's own and judged as such.
    if s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(last(s[6], s[7]));
    }
    // SIIT's IPv4-translated ::ffff:0:a.b.c.d.
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(last(s[6], s[7]));
    }
    // NAT64, well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last(s[6], s[7]));
    }
    // NAT64, local-use prefix 64:ff9b:1::/48 (RFC 8215), with the IPv4 address at the end.
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some(last(s[6], s[7]));
    }
    // 6to4, 2002:aabb:ccdd::/48.
    if s[0] == 0x2002 {
        return Some(last(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_less_known_ranges_are_refused() {
        for (text, class) in [
            ("192.0.0.192", "protocol assignments"),
            ("240.1.2.3", "reserved"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
            ("::ffff:0:a00:1", "private"),
        ] {
            assert_eq!(reason(text), Some(class), "{text}");
        }
        assert_eq!(
            reason("192.0.2.1"),
            None,
            "documentation ranges reach nothing of ours"
        );
    }

    fn reason(text: &str) -> Option<&'static str> {
        forbidden(text.parse().unwrap())
    }

    #[test]
    fn public_addresses_are_allowed() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "223.255.255.255",
            // Documentation ranges reach nothing of ours.
            "192.0.2.1",
            "2001:db8::1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(reason(text), None, "{text}");
        }
    }

    #[test]
    fn loopback() {
        for text in ["127.0.0.1", "127.255.255.254", "::1"] {
            assert_eq!(reason(text), Some("loopback"), "{text}");
        }
    }

    #[test]
    fn private() {
        for text in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
        ] {
            assert_eq!(reason(text), Some("private"), "{text}");
        }
    }

    #[test]
    fn shared() {
        for text in ["100.64.0.0", "100.64.0.1", "100.127.255.255"] {
            assert_eq!(reason(text), Some("shared"), "{text}");
        }
    }

    #[test]
    fn unspecified_and_this_network() {
        assert_eq!(reason("0.0.0.0"), Some("unspecified"));
        assert_eq!(reason("::"), Some("unspecified"));
        assert_eq!(reason("0.1.2.3"), Some("this network"));
        assert_eq!(reason("0.255.255.255"), Some("this network"));
    }

    #[test]
    fn link_local() {
        for text in ["169.254.0.1", "169.254.255.255", "fe80::1", "febf::1"] {
            assert_eq!(reason(text), Some("link-local"), "{text}");
        }
    }

    #[test]
    fn multicast_and_broadcast() {
        for text in ["224.0.0.1", "239.255.255.255", "ff02::1", "ff0e::1"] {
            assert_eq!(reason(text), Some("multicast"), "{text}");
        }
        assert_eq!(reason("255.255.255.255"), Some("broadcast"));
    }

    #[test]
    fn cloud_metadata_is_named_before_its_range() {
        for text in ["169.254.169.254", "100.100.100.200", "fd00:ec2::254"] {
            assert_eq!(reason(text), Some("cloud metadata"), "{text}");
        }
        assert_eq!(reason("fd00:ec2::253"), Some("private"));
    }

    #[test]
    fn ipv6_forms_of_ipv4_are_judged_by_the_ipv4_address() {
        for (text, class) in [
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("::192.168.0.1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("64:ff9b::100.64.0.1", "shared"),
            ("64:ff9b:1::c0a8:1", "private"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:a00:1::", "private"),
        ] {
            assert_eq!(reason(text), Some(class), "{text}");
        }
    }

    #[test]
    fn an_https_url_is_taken_apart() {
        let url = EndpointUrl::parse("https://hooks.example.com/outbound?x=1", false).unwrap();
        assert_eq!(url.as_str(), "https://hooks.example.com/outbound?x=1");
        assert_eq!(url.host(), "hooks.example.com");
        assert_eq!(url.url().port_or_known_default(), Some(443));
        assert_eq!(url.ip_literal(), None);
        assert_eq!(url.to_string(), url.as_str());

        let url = EndpointUrl::parse("https://hooks.example.com:8443/", false).unwrap();
        assert_eq!(url.url().port_or_known_default(), Some(8443));
    }

    #[test]
    fn plain_http_only_when_allowed() {
        assert_eq!(
            EndpointUrl::parse("http://hooks.example.com/", false),
            Err(WebhookError::UrlScheme("http".to_owned()))
        );
        let url = EndpointUrl::parse("http://hooks.example.com/", true).unwrap();
        assert_eq!(url.url().port_or_known_default(), Some(80));
        for text in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
        ] {
            assert!(
                matches!(
                    EndpointUrl::parse(text, true),
                    Err(WebhookError::UrlScheme(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn ip_literals_are_exposed_in_every_disguise() {
        for (text, ip) in [
            ("https://127.0.0.1/", "127.0.0.1"),
            ("https://2130706433/", "127.0.0.1"),
            ("https://0x7f.1/", "127.0.0.1"),
            ("https://017700000001/", "127.0.0.1"),
            ("https://[::1]:8443/", "::1"),
            (
                "https://[::ffff:169.254.169.254]/",
                "::ffff:169.254.169.254",
            ),
            ("https://8.8.8.8/", "8.8.8.8"),
        ] {
            let url = EndpointUrl::parse(text, false).unwrap();
            assert_eq!(url.ip_literal(), Some(ip.parse().unwrap()), "{text}");
            assert_eq!(
                url.host().parse::<IpAddr>().ok(),
                url.ip_literal(),
                "{text}"
            );
        }
        let v6 = EndpointUrl::parse("https://[::1]:8443/", false).unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.url().port_or_known_default(), Some(8443));
        assert_eq!(forbidden(v6.ip_literal().unwrap()), Some("loopback"));
    }

    #[test]
    fn credentials_are_refused() {
        for text in [
            "https://user@hooks.example.com/",
            "https://user:secret@hooks.example.com/",
            "https://:secret@hooks.example.com/",
        ] {
            assert_eq!(
                EndpointUrl::parse(text, false),
                Err(WebhookError::UrlUserInfo),
                "{text}"
            );
        }
    }

    #[test]
    fn relative_or_hostless_urls_are_refused() {
        for text in [
            "",
            "/hooks",
            "hooks.example.com/x",
            "https://",
            "https://:443/",
        ] {
            assert!(
                matches!(
                    EndpointUrl::parse(text, false),
                    Err(WebhookError::UrlMalformed(_) | WebhookError::UrlNoHost)
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn long_urls_are_refused_by_characters() {
        let prefix = "https://hooks.example.com/";
        let fits = format!("{prefix}{}", "a".repeat(MAX_URL_CHARS - prefix.len()));
        assert!(EndpointUrl::parse(&fits, false).is_ok());
        let long = format!("{fits}a");
        assert_eq!(
            EndpointUrl::parse(&long, false),
            Err(WebhookError::UrlTooLong(MAX_URL_CHARS + 1))
        );
    }
}
