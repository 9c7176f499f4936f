//! Failed lock operations, counted by operation and kind: a benchmark
//! reports them as a figure and goes on, instead of ending at the first one.

use std::collections::BTreeMap;
use std::fmt;

use shylock::Error;

/// How many lock operations failed, by `operation kind` (for example
/// `release backend-timeout`, `acquire timeout`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    /// Count one failure of `op` (`acquire`, `release`, ...) with `e`.
    pub fn add(&mut self, op: &str, e: &Error) {
        self.add_key(&format!("{op} {}", kind(e)), 1);
    }

    /// Count `n` failures under a key of the caller's (`op kind`, no `=`).
    pub fn add_key(&mut self, key: &str, n: u64) {
        if n > 0 {
            *self.0.entry(key.to_owned()).or_default() += n;
        }
    }

    /// Add the counts of `other`.
    pub fn merge(&mut self, other: &Errors) {
        for (k, n) in &other.0 {
            self.add_key(k, *n);
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// One line for a child's report: `ERRORS op:kind=n ...` (spaces in the
    /// keys become `:`).
    pub fn to_line(&self) -> String {
        let mut line = "ERRORS".to_owned();
        for (k, n) in &self.0 {
            line.push(' ');
            line.push_str(&k.replace(' ', ":"));
            line.push('=');
            line.push_str(&n.to_string());
        }
        line
    }

    /// Parse [`to_line`](Self::to_line)'s output.
    pub fn from_line(line: &str) -> Option<Errors> {
        let rest = line.strip_prefix("ERRORS")?;
        let mut e = Errors::default();
        for item in rest.split_whitespace() {
            let (k, n) = item.rsplit_once('=')?;
            e.add_key(&k.replace(':', " "), n.parse().ok()?);
        }
        Some(e)
    }
}

/// `none`, or the total and each kind, such as
/// `3: release backend-timeout ×2, acquire timeout ×1`.
impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let mut by_count: Vec<(&String, &u64)> = self.0.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        write!(f, "{}:", self.total())?;
        for (i, (k, n)) in by_count.into_iter().enumerate() {
            write!(f, "{} {k} ×{n}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// The kind of a lock error, one word: `timeout` (the caller's limit),
/// `lease-lost`, `backend-<kind>` (such as `backend-timeout`: a backend call
/// that ran out of its time, whose outcome is unknown), or `other`.
pub fn kind(e: &Error) -> String {
    match e {
        Error::Timeout { .. } => "timeout".into(),
        Error::LeaseLost { .. } => "lease-lost".into(),
        _ => match e.backend_kind() {
            Some(k) => format!("backend-{}", kebab(&format!("{k:?}"))),
            None => "other".into(),
        },
    }
}

/// `RateLimited` → `rate-limited`.
fn kebab(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn errors_round_trip_through_a_line() {
        let mut e = Errors::default();
        e.add(
            "acquire",
            &Error::Timeout {
                name: "x".into(),
                waited: Duration::from_secs(1),
                source: None,
            },
        );
        e.add_key("release backend-timeout", 2);
        let back = Errors::from_line(&e.to_line()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            e.to_string(),
            "3: release backend-timeout ×2, acquire timeout ×1"
        );
        assert_eq!(Errors::from_line("ERRORS"), Some(Errors::default()));
        assert_eq!(Errors::default().to_string(), "none");
        assert_eq!(kebab("RateLimited"), "rate-limited");
    }
}
