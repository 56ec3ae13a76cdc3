//! Debian version numbers compared as dpkg compares them (Debian Policy §5.6.12):
//! `[epoch:]upstream[-revision]`, where `~` sorts before everything, even the end of a part,
//! letters before other symbols, and digit runs compare as numbers.
//!
//! The resolver uses it to check versioned dependencies (`libc6 (>= 2.34)`) and to pick the
//! highest candidate, as apt does.

use std::cmp::Ordering;

/// Compares two Debian version strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

/// (epoch, upstream, revision); a missing epoch is 0 and a missing revision is empty.
fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

/// The weight of one non-digit character: `~` lowest, then the end of the string, then
/// letters, then everything else by its code.
fn order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // The non-digit prefixes, character by character.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            match order(ca).cmp(&order(cb)) {
                Ordering::Equal => {
                    a = &a[1..];
                    b = &b[1..];
                }
                other => return other,
            }
        }
        // Then the digit runs, as numbers (without leading zeros, by length then digits).
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = trim_zeros(&a[..da]);
        let nb = trim_zeros(&b[..db]);
        match na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)) {
            Ordering::Equal => {}
            other => return other,
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let first = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[first..]
}

/// A version relation in a dependency: `<<`, `<=`, `=`, `>=`, `>>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `<<`
    Less,
    /// `<=` (and the obsolete `<`)
    LessOrEqual,
    /// `=`
    Equal,
    /// `>=` (and the obsolete `>`)
    GreaterOrEqual,
    /// `>>`
    Greater,
}

impl Relation {
    /// Parses the operator as Packages files write it.
    pub fn parse(op: &str) -> Option<Relation> {
        Some(match op {
            "<<" => Relation::Less,
            "<=" | "<" => Relation::LessOrEqual,
            "=" => Relation::Equal,
            ">=" | ">" => Relation::GreaterOrEqual,
            ">>" => Relation::Greater,
            _ => return None,
        })
    }

    /// Whether `version` satisfies `self wanted`.
    pub fn holds(self, version: &str, wanted: &str) -> bool {
        let o = compare(version, wanted);
        match self {
            Relation::Less => o == Ordering::Less,
            Relation::LessOrEqual => o != Ordering::Greater,
            Relation::Equal => o == Ordering::Equal,
            Relation::GreaterOrEqual => o != Ordering::Less,
            Relation::Greater => o == Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn dpkg_orders_versions_as_policy_says() {
        // Pairs checked with `dpkg --compare-versions` on Debian 12.
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0+b1", Less),
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("2.36-9", "2.36-9+deb12u1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("1.001", "1.1", Equal),
            ("1:1.35.0-4+deb12u1+b1", "1:1.35.0-4+deb12u1", Greater),
            ("6.1.192-3", "6.1.76-1", Greater),
            ("1.2-3-4", "1.2-3-5", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn relations_hold_as_dependencies_mean_them() {
        assert!(Relation::GreaterOrEqual.holds("2.36-9", "2.34"));
        assert!(!Relation::GreaterOrEqual.holds("2.33", "2.34"));
        assert!(Relation::Less.holds("1.0~rc1", "1.0"));
        assert!(!Relation::Less.holds("1.0", "1.0"));
        assert!(Relation::Equal.holds("0:1.0", "1.0"));
        assert!(Relation::Greater.holds("1.0+b1", "1.0"));
        assert_eq!(Relation::parse(">"), Some(Relation::GreaterOrEqual));
        assert_eq!(Relation::parse("~"), None);
    }
}
