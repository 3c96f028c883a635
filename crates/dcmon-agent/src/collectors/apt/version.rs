//! Debian version comparison, as dpkg does it (Debian Policy §5.6.12,
//! dpkg `lib/dpkg/version.c`): `[epoch:]upstream[-revision]`, the epoch compared as a
//! number, then upstream and revision each by alternating non-digit and digit runs, where
//! letters sort before other characters and `~` sorts before everything, even the end.

use std::cmp::Ordering;

/// Compares two Debian version strings. Total on any input: a malformed version (a
/// non-numeric epoch) compares with epoch 0 and the whole string as upstream, so the
/// ordering stays antisymmetric and transitive.
pub(super) fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| compare_part(ra.as_bytes(), rb.as_bytes()))
}

/// Epoch, upstream version and revision. The revision follows the last `-`; a version
/// without one has the empty revision, which compares equal to `0` as in dpkg.
fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            // More digits than u64 holds: saturate, still a total order over real epochs.
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// Sort weight of one non-digit position; `None` is the end of the string.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
fn compare_part(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(a: &str, expect: Ordering, b: &str) {
        assert_eq!(compare(a, b), expect, "{a} vs {b}");
        assert_eq!(compare(b, a), expect.reverse(), "{b} vs {a}");
    }

    #[test]
    fn policy_and_dpkg_examples() {
        use Ordering::*;
        // Policy §5.6.12: `~~ < ~~a < ~ < (empty) < a`.
        check("1.0~~", Less, "1.0~~a");
        check("1.0~~a", Less, "1.0~");
        check("1.0~", Less, "1.0");
        check("1.0", Less, "1.0a");
        check("1.0~rc1-1", Less, "1.0-1");
        check("1:1.0", Greater, "2.0");
        check("0:1.0", Equal, "1.0");
        check("1.0", Equal, "1.0-0");
        check("1.0-1", Less, "1.0-2");
        check("1.2.3", Less, "1.10");
        check("2.30-1", Greater, "2.3-1");
        check("1.0+b1", Greater, "1.0");
        check("1.0.0", Greater, "1.0");
        check("1.01", Equal, "1.1");
        check("1.0a", Less, "1.0+");
        check("2.36-9+deb12u4", Greater, "2.36-9+deb12u3");
        check("2.36-9+deb12u10", Greater, "2.36-9+deb12u9");
        check("1:2.38.1-5+deb12u1", Greater, "1:2.38.1-5");
        check("7.88.1-10+deb12u5", Less, "7.88.1-10+deb12u12");
        check("1.2-3-4", Greater, "1.2-3-3");
        check("1.0ubuntu0.22.04.1", Greater, "1.0ubuntu0.20.04.1");
        check("x:1.0", Less, "1:0");
    }

    fn version() -> impl Strategy<Value = String> {
        "([0-9]{1,2}:)?[0-9a-z.+~]{1,5}(-[0-9a-z.+~]{1,4})?"
    }

    proptest! {
        #[test]
        fn reflexive_and_antisymmetric(a in version(), b in version()) {
            prop_assert_eq!(compare(&a, &a), Ordering::Equal);
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }

        #[test]
        fn transitive(a in version(), b in version(), c in version()) {
            let v = [&a, &b, &c];
            for (x, y, z) in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)] {
                if compare(v[x], v[y]) != Ordering::Greater && compare(v[y], v[z]) != Ordering::Greater {
                    prop_assert_ne!(compare(v[x], v[z]), Ordering::Greater, "{} {} {}", v[x], v[y], v[z]);
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(a in "\\PC{0,12}", b in "\\PC{0,12}") {
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }
    }
}
