//! `timeline.url`: where the Scylla cluster of the timeline is, read and checked with the
//! settings so a bad URL is refused at start.

use std::fmt;

pub const DEFAULT_PORT: u16 = 9042;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaUrl {
    /// `host:port` of each contact point.
    pub nodes: Vec<String>,
    pub keyspace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must look like scylla://host:port[,host:port...]/keyspace")]
    Shape,
    #[error("bad contact point {0:?}: expected host or host:port")]
    Node(String),
    #[error(
        "keyspace {0:?} must start with a letter and have at most 48 letters, digits and \
         underscores"
    )]
    Keyspace(String),
}

impl ScyllaUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let rest = url.strip_prefix("scylla://").ok_or(UrlError::Shape)?;
        let (hosts, keyspace) = rest.split_once('/').ok_or(UrlError::Shape)?;
        if hosts.is_empty() {
            return Err(UrlError::Shape);
        }
        let nodes = hosts
            .split(',')
            .map(|node| {
                let node = node.trim();
                let (host, port) = match node.rsplit_once(':') {
                    // A bracketed IPv6 literal without a port.
                    _ if node.starts_with('[') && node.ends_with(']') => (node, DEFAULT_PORT),
                    // An IPv6 literal is bracketed: [::1]:9042
                    Some((host, port))
                        if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) =>
                    {
                        let port: u16 =
                            port.parse().map_err(|_| UrlError::Node(node.to_owned()))?;
                        if port == 0 {
                            return Err(UrlError::Node(node.to_owned()));
                        }
                        (host, port)
                    }
                    Some(_) => return Err(UrlError::Node(node.to_owned())),
                    None => (node, DEFAULT_PORT),
                };
                if host.is_empty() || host.contains('/') || host.contains('@') {
                    return Err(UrlError::Node(node.to_owned()));
                }
                Ok(format!("{host}:{port}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !valid_keyspace(keyspace) {
            return Err(UrlError::Keyspace(keyspace.to_owned()));
        }
        Ok(Self {
            nodes,
            keyspace: keyspace.to_owned(),
        })
    }
}

impl fmt::Display for ScyllaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scylla://{}/{}", self.nodes.join(","), self.keyspace)
    }
}

/// CQL's unquoted identifiers, within Scylla's 48-character keyspace limit. Anything else is
/// refused, since the keyspace is spliced into statement text.
fn valid_keyspace(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 48
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            ScyllaUrl::parse("scylla://127.0.0.1:9042/outbound"),
            Ok(ScyllaUrl {
                nodes: vec!["127.0.0.1:9042".into()],
                keyspace: "outbound".into()
            })
        );
        let Ok(many) = ScyllaUrl::parse("scylla://a.example,b.example:19042,[::1]:9043,[::2]/ks_1")
        else {
            panic!("a valid url");
        };
        assert_eq!(
            many.nodes,
            vec![
                "a.example:9042",
                "b.example:19042",
                "[::1]:9043",
                "[::2]:9042"
            ]
        );
        assert_eq!(many.keyspace, "ks_1");
        assert_eq!(
            many.to_string(),
            "scylla://a.example:9042,b.example:19042,[::1]:9043,[::2]:9042/ks_1"
        );
    }

    #[test]
    fn refuses_bad_urls() {
        for (url, expected) in [
            ("cassandra://h/ks", UrlError::Shape),
            ("scylla://h", UrlError::Shape),
            ("scylla:///ks", UrlError::Shape),
            ("scylla://h:x/ks", UrlError::Node("h:x".into())),
            ("scylla://h:0/ks", UrlError::Node("h:0".into())),
            ("scylla://h:99999/ks", UrlError::Node("h:99999".into())),
            ("scylla://h,/ks", UrlError::Node("".into())),
            ("scylla://u@h/ks", UrlError::Node("u@h".into())),
            ("scylla://::1/ks", UrlError::Node("::1".into())),
            ("scylla://h/", UrlError::Keyspace("".into())),
            ("scylla://h/1ks", UrlError::Keyspace("1ks".into())),
            ("scylla://h/ks;drop", UrlError::Keyspace("ks;drop".into())),
            ("scylla://h/a/b", UrlError::Keyspace("a/b".into())),
        ] {
            assert_eq!(ScyllaUrl::parse(url), Err(expected), "{url}");
        }
        let long = format!("scylla://h/{}", "k".repeat(49));
        assert!(matches!(
            ScyllaUrl::parse(&long),
            Err(UrlError::Keyspace(_))
        ));
    }
}
