//! Domains, local parts and send-connector address spaces as the configuration accepts them.

use std::fmt;
use std::str::FromStr;

use crate::net::is_host_name;

/// Checks a mail domain and returns it in lower case (without a trailing dot).
///
/// Internationalised domains are written in their A-label (`xn--`) form.
pub(crate) fn normalise_domain(text: &str) -> Result<String, String> {
    let domain = text.strip_suffix('.').unwrap_or(text);
    if domain.is_ascii() && is_host_name(domain) {
        Ok(domain.to_ascii_lowercase())
    } else {
        Err(format!(
            "invalid domain {text:?}: expected labels of letters, digits and '-' separated by dots \
             (internationalised names in their xn-- form)"
        ))
    }
}

/// Checks a local part that names a mailbox: letters, digits and `.-_+=`, no leading dot, no `..`,
/// at most 64 octets.
pub(crate) fn check_local_part(text: &str) -> Result<(), String> {
    let safe = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('.')
        && !text.contains("..")
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_+=".contains(&b));
    if safe {
        Ok(())
    } else {
        Err(format!(
            "invalid local part {text:?}: use letters, digits and .-_+= (no leading dot, no \"..\", at most 64 characters)"
        ))
    }
}

/// Checks an address `local@domain` (as in `aliases` and `[alerts] email_to`) and lower-cases its domain.
pub(crate) fn normalise_address(text: &str) -> Result<String, String> {
    let (local, domain) = text
        .rsplit_once('@')
        .filter(|(local, _)| !local.is_empty() && !local.chars().any(|c| c.is_whitespace() || c.is_control()))
        .ok_or_else(|| format!("invalid address {text:?}: expected local@domain"))?;
    let domain = normalise_domain(domain).map_err(|why| format!("invalid address {text:?}: {why}"))?;
    Ok(format!("{local}@{domain}"))
}

/// One entry of a send connector's `address_spaces`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressSpace {
    /// `"*"`: every domain.
    Any,
    /// `"*.example.com"`: every subdomain of `example.com` (not `example.com` itself); holds `example.com`.
    Subdomains(String),
    /// `"example.com"`: exactly that domain.
    Domain(String),
}

impl AddressSpace {
    /// Whether mail to `domain` (any case) is routed by this address space.
    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        match self {
            AddressSpace::Any => true,
            AddressSpace::Domain(own) => own.eq_ignore_ascii_case(domain),
            AddressSpace::Subdomains(parent) => {
                // Byte-wise, so that a non-ASCII domain can never split a character.
                let (domain, parent) = (domain.as_bytes(), parent.as_bytes());
                domain.len() > parent.len() + 1
                    && domain[domain.len() - parent.len() - 1] == b'.'
                    && domain[domain.len() - parent.len()..].eq_ignore_ascii_case(parent)
            }
        }
    }

    /// Ranks matching address spaces: among those that match one domain, the highest is the most specific
    /// An exact domain outranks a wildcard over its parent, and `*` ranks lowest.
    pub fn specificity(&self) -> usize {
        let labels = |domain: &str| domain.split('.').count();
        match self {
            AddressSpace::Any => 0,
            AddressSpace::Subdomains(parent) => 2 * labels(parent) + 1,
            AddressSpace::Domain(domain) => 2 * labels(domain),
        }
    }
}

impl FromStr for AddressSpace {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(AddressSpace::Any);
        }
        let bad = |why: String| {
            format!("invalid address space {text:?}: {why}; expected \"*\", \"*.example.com\" or \"example.com\"")
        };
        match text.strip_prefix("*.") {
            Some(parent) => normalise_domain(parent).map(AddressSpace::Subdomains).map_err(bad),
            None => normalise_domain(text).map(AddressSpace::Domain).map_err(bad),
        }
    }
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressSpace::Any => f.write_str("*"),
            AddressSpace::Subdomains(parent) => write!(f, "*.{parent}"),
            AddressSpace::Domain(domain) => f.write_str(domain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lower_cased_and_checked() {
        assert_eq!(normalise_domain("Example.TEST").as_deref(), Ok("example.test"));
        assert_eq!(normalise_domain("localhost").as_deref(), Ok("localhost"));
        assert_eq!(normalise_domain("example.test.").as_deref(), Ok("example.test"));
        for text in ["", ".", "a..b", "-a.test", "a b.test", "bücher.test", "*.test"] {
            assert!(normalise_domain(text).is_err(), "{text}");
        }
    }

    #[test]
    fn local_parts_are_checked() {
        for text in ["alice", "a.b", "a+tag", "x-y_z=1"] {
            assert_eq!(check_local_part(text), Ok(()), "{text}");
        }
        let long = "a".repeat(65);
        for text in ["", ".a", "a..b", "a/b", "a b", "a@b", long.as_str()] {
            assert!(check_local_part(text).is_err(), "{text}");
        }
    }

    #[test]
    fn addresses_are_checked() {
        assert_eq!(normalise_address("Root@LocalHost").as_deref(), Ok("Root@localhost"));
        for text in ["root", "@localhost", "root@", "a b@x.test", "root@bad domain"] {
            assert!(normalise_address(text).is_err(), "{text}");
        }
    }

    #[test]
    fn address_spaces_parse_and_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything.test", true),
            ("example.com", "example.com", true),
            ("example.com", "EXAMPLE.com", true),
            ("example.com", "a.example.com", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "b.a.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.Example.COM", "x.example.com", true),
        ];
        for (space, domain, expected) in cases {
            let parsed: AddressSpace = space.parse().expect(space);
            assert_eq!(parsed.matches(domain), *expected, "{space} matches {domain}");
            assert_eq!(parsed.to_string().parse::<AddressSpace>(), Ok(parsed.clone()));
        }
        for text in ["", "**", "*.", "*.*", "a.*.b", "ex ample.com"] {
            assert!(text.parse::<AddressSpace>().is_err(), "{text}");
        }
    }

    #[test]
    fn more_specific_address_spaces_rank_higher() {
        let rank = |text: &str| text.parse::<AddressSpace>().expect(text).specificity();
        assert!(rank("*") < rank("*.example.com"));
        assert!(rank("*.example.com") < rank("a.example.com"));
        assert!(rank("a.example.com") < rank("*.a.example.com"));
        assert!(rank("*.a.example.com") < rank("b.a.example.com"));
    }
}
