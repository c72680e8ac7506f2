//! The identity a verified token grants: user id, expiry, and topic patterns for `sub` and
//! `pub`.

use std::fmt;

/// A list of topic patterns: exact names (`orders.eu`), prefix wildcards (`prices.*` matches
/// every topic that starts with `prices.`), or `*` for every topic.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TopicPatterns {
    /// Exact names, and prefixes (the pattern without its trailing `*`) flagged `true`.
    items: Vec<(Box<str>, bool)>,
}

impl TopicPatterns {
    /// Patterns that match every topic (`*`).
    pub fn any() -> Self {
        TopicPatterns {
            items: vec![(Box::from(""), true)],
        }
    }

    /// Parse patterns; a trailing `*` makes a prefix pattern (`prices.*`, or `*` alone).
    /// Empty strings are skipped.
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Self {
        let items = patterns
            .into_iter()
            .filter_map(|p| {
                let p = p.as_ref().trim();
                if p.is_empty() {
                    return None;
                }
                Some(match p.strip_suffix('*') {
                    Some(prefix) => (Box::from(prefix), true),
                    None => (Box::from(p), false),
                })
            })
            .collect();
        TopicPatterns { items }
    }

    /// Whether `topic` matches one of the patterns.
    pub fn allows(&self, topic: &str) -> bool {
        self.items.iter().any(|(p, prefix)| {
            if *prefix {
                topic.starts_with(&**p)
            } else {
                topic == &**p
            }
        })
    }

    /// Whether no topic matches.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Debug for TopicPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.items
                    .iter()
                    .map(|(p, prefix)| format!("{p}{}", if *prefix { "*" } else { "" })),
            )
            .finish()
    }
}

/// Who a connection is and what it may do, from its token (or everything, when auth is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (the token's `sub`); empty for an anonymous connection.
    pub user: Box<str>,
    /// When the token expires, in seconds since the Unix epoch (`None`: never).
    pub exp: Option<u64>,
    /// Topics the connection may subscribe to.
    pub subscribe: TopicPatterns,
    /// Topics the connection may publish to.
    pub publish: TopicPatterns,
}

impl Identity {
    /// An anonymous identity that may subscribe and publish anywhere (auth off).
    pub fn anonymous() -> Self {
        Identity {
            user: Box::from(""),
            exp: None,
            subscribe: TopicPatterns::any(),
            publish: TopicPatterns::any(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_star_patterns() {
        let p = TopicPatterns::new(["prices.*", "orders.eu", ""]);
        assert!(p.allows("prices.BTC"));
        assert!(p.allows("prices."));
        assert!(!p.allows("prices"), "the dot is part of the prefix");
        assert!(p.allows("orders.eu"));
        assert!(!p.allows("orders.eu.x"), "exact names are exact");
        assert!(!p.allows("orders.us"));
        assert!(TopicPatterns::new(["*"]).allows("anything.at.all"));
        assert!(TopicPatterns::any().allows("x"));
        let none = TopicPatterns::new(Vec::<String>::new());
        assert!(none.is_empty() && !none.allows("x"));
        assert_eq!(format!("{p:?}"), r#"["prices.*", "orders.eu"]"#);
    }
}
