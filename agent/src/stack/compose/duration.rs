//! Compose durations (`healthcheck.interval: 1m30s`): Go's
//! `time.ParseDuration` grammar without a sign, which is also what Compose v1
//! accepts — a sequence of decimal numbers, each with a unit `h`, `m`, `s`,
//! `ms`, `us` (`µs`) or `ns`.
//!
//! Invariant: integer arithmetic only, so `0.1s` is exactly 100 ms, and a
//! value too large for a [`Duration`] of `u64` nanoseconds is an error rather
//! than a wrap-around.

use std::time::Duration;

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses `text`; the error says what was expected.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like \"1m30s\", \"10s\" or \"500ms\", got {text:?}");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number = &rest[..digits];
        rest = &rest[digits..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad());
        }
        // Longest unit first, so that `ms` is not read as `m` then `s`.
        let (unit, scale) = UNITS
            .iter()
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut part = whole.checked_mul(*scale).ok_or_else(bad)?;
        // Digits beyond nanosecond precision cannot matter.
        let mut divisor: u128 = 1;
        for digit in fraction.bytes().take(18) {
            divisor *= 10;
            let d = u128::from(digit - b'0');
            part = part.checked_add(d * scale / divisor).ok_or_else(bad)?;
        }
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    let nanos = u64::try_from(total).map_err(|_| bad())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations() {
        let table: &[(&str, u64)] = &[
            ("1m30s", 90_000_000_000),
            ("10s", 10_000_000_000),
            ("500ms", 500_000_000),
            ("1h", 3_600_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("1.5s", 1_500_000_000),
            ("0.1s", 100_000_000),
            (".5m", 30_000_000_000),
            ("2.m", 120_000_000_000),
            ("0s", 0),
            ("30s1m", 90_000_000_000),
            ("3µs", 3_000),
        ];
        for (text, nanos) in table {
            assert_eq!(
                parse(text),
                Ok(Duration::from_nanos(*nanos)),
                "input {text:?}"
            );
        }
    }

    #[test]
    fn refuses_anything_else() {
        for text in [
            "",
            " ",
            "10",
            "s",
            "1.2.3s",
            "-1s",
            "1 s",
            "1d",
            "1m30",
            "abc",
            ".s",
            "99999999999999999999h",
            "1e3s",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("1m30s"), "input {text:?}: {err}");
        }
    }
}
