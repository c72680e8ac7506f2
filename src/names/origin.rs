//! The browser origin allowlist: exact origins (`https://app.example.com`) and wildcard
//! subdomains (`https://*.example.com`, or `*.example.com` for any scheme).

/// A pattern in the allowlist that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin pattern {0:?}: use scheme://host[:port], scheme://*.domain or *.domain")]
pub struct OriginPatternError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// A whole origin, lowercased.
    Exact(String),
    /// `scheme://*.suffix` (scheme `None`: any); `suffix` starts with the dot.
    Sub {
        scheme: Option<String>,
        suffix: String,
    },
}

/// Origins a browser handshake may come from. Requests without an `Origin` header (not from
/// a browser) are not affected: a non-browser client can send any header it likes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginAllowlist {
    patterns: Vec<Pattern>,
}

impl OriginAllowlist {
    /// Parse the patterns (case-insensitive).
    pub fn new<S: AsRef<str>>(
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Self, OriginPatternError> {
        let mut out = Vec::new();
        for p in patterns {
            let raw = p.as_ref().trim();
            let lower = raw.to_ascii_lowercase();
            let bad = || OriginPatternError(raw.to_string());
            if lower.is_empty() || lower.ends_with('/') || lower.contains(char::is_whitespace) {
                return Err(bad());
            }
            let (scheme, rest) = match lower.split_once("://") {
                Some((s, r)) if !s.is_empty() => (Some(s.to_string()), r.to_string()),
                Some(_) => return Err(bad()),
                None => (None, lower.clone()),
            };
            if rest.is_empty() || rest.contains('/') {
                return Err(bad());
            }
            match rest.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => {
                    if suffix[1..].contains('*') {
                        return Err(bad());
                    }
                    out.push(Pattern::Sub {
                        scheme,
                        suffix: suffix.to_string(),
                    });
                }
                Some(_) => return Err(bad()),
                None if scheme.is_some() && !rest.contains('*') => out.push(Pattern::Exact(lower)),
                None => return Err(bad()),
            }
        }
        Ok(OriginAllowlist { patterns: out })
    }

    /// Whether a browser from `origin` may connect.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim();
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(o) => origin.eq_ignore_ascii_case(o),
            Pattern::Sub { scheme, suffix } => {
                let Some((s, authority)) = origin.split_once("://") else {
                    return false;
                };
                if scheme
                    .as_deref()
                    .is_some_and(|want| !s.eq_ignore_ascii_case(want))
                {
                    return false;
                }
                let host = authority.to_ascii_lowercase();
                host.len() > suffix.len() && host.ends_with(suffix.as_str()) && !host.contains('/')
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_origins() {
        let a = OriginAllowlist::new([
            "https://app.example.com",
            "https://*.example.org",
            "*.example.net",
        ])
        .unwrap();
        assert!(a.allows("https://app.example.com"));
        assert!(a.allows("HTTPS://APP.example.com"));
        assert!(!a.allows("http://app.example.com"), "scheme matters");
        assert!(!a.allows("https://app.example.com:8443"), "port matters");
        assert!(!a.allows("https://evil.com"));
        assert!(a.allows("https://a.b.example.org"));
        assert!(
            !a.allows("https://example.org"),
            "the apex is not a subdomain"
        );
        assert!(!a.allows("https://evilexample.org"));
        assert!(!a.allows("http://x.example.org"));
        assert!(a.allows("http://x.example.net") && a.allows("https://y.example.net"));
        assert!(!a.allows("null"));
        for bad in [
            "",
            "https://",
            "*",
            "*example.com",
            "https://a.com/",
            "a.com",
            "https://*.a*.com",
        ] {
            assert!(OriginAllowlist::new([bad]).is_err(), "{bad:?}");
        }
    }
}
