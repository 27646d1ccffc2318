//! Timestamps as the API sends them, and the mirror's one form of them.
//!
//! The docs show `2024-01-15T10:30:00.123Z`; the live service passes Postgres values
//! through (`2025-06-01T10:00:00.123456+00:00`, trailing zeros trimmed), and other
//! services write `+0100`, `+01`, a space for the `T`, or nine fractional digits. All of
//! them are read, and each is stored as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`: six fractional
//! digits keep Postgres' microseconds, and one fixed width makes text order time order,
//! which the planner and the analysts' SQL rely on (`'...00.123Z'` would sort after
//! `'...00.123456Z'`). Digits past the microsecond are truncated, not rounded, so a
//! timestamp never moves into the next second (or day).

use chrono::{DateTime, NaiveDate, Utc};

/// Rewrites a timestamp in any form [`parse_timestamp`] reads as the mirror's
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `None` if it is not a timestamp.
pub fn normalize_timestamp(s: &str) -> Option<String> {
    if is_canonical(s, 27) {
        return Some(s.to_string());
    }
    // The docs' (and the simulator's) millisecond form: pad, no parsing.
    if is_canonical(s, 24) {
        let mut t = String::with_capacity(27);
        t.push_str(&s[..23]);
        t.push_str("000Z");
        return Some(t);
    }
    parse_timestamp(s).map(format_timestamp)
}

/// The mirror's one timestamp format (microseconds, truncated).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Reads `YYYY-MM-DD`, then `T`, `t` or a space, `HH:MM[:SS[.fraction]]` (any number of
/// fractional digits), then `Z`, `z`, `±HH:MM`, `±HHMM`, `±HH` or nothing (UTC), with
/// an optional space before the offset.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let date_time_sep = matches!(b.get(10), Some(b'T' | b't' | b' '));
    if !(sep(4, b'-') && sep(7, b'-') && date_time_sep && sep(13, b':')) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 2)?, num(8, 2)?)?;
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    let mut i = 16;
    let mut second = 0;
    if sep(i, b':') {
        second = num(i + 1, 2)?;
        i += 3;
    }
    let mut micros = 0;
    if sep(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &b[start..i.min(start + 6)];
        micros = digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
            * 10u32.pow(6 - digits.len() as u32);
    }
    let offset_secs = offset(&b[i..])?;
    let local = date.and_hms_micro_opt(hour, minute, second, micros)?;
    let utc = local - chrono::Duration::seconds(i64::from(offset_secs));
    Some(utc.and_utc())
}

/// Seconds east of UTC of a zone suffix: empty, `Z`, `±HH`, `±HHMM` or `±HH:MM`.
fn offset(zone: &[u8]) -> Option<i32> {
    let zone = zone.strip_prefix(b" ").unwrap_or(zone);
    if zone.is_empty() || zone == b"Z" || zone == b"z" {
        return Some(0);
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: Vec<u8> = match zone[1..] {
        [h1, h2] => vec![h1, h2, b'0', b'0'],
        [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => vec![h1, h2, m1, m2],
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| i32::from(digits[i] - b'0');
    let (hours, minutes) = (n(0) * 10 + n(1), n(2) * 10 + n(3));
    (hours < 24 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// `YYYY-MM-DDTHH:MM:SS.` then `len - 21` digits and `Z`, with a plausible date and
/// time: nearly every timestamp the API writes, taken without parsing. Days past the
/// 28th go through the parser, which knows the months.
fn is_canonical(s: &str, len: usize) -> bool {
    let b = s.as_bytes();
    if b.len() != len {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..len - 1)
        && b[len - 1] == b'Z'
        && (1..=12).contains(&num(5..7))
        && (1..=28).contains(&num(8..10))
        && num(11..13) < 24
        && num(14..16) < 60
        && num(17..19) < 60
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form real services emit, and what the mirror stores for it.
    #[test]
    fn timestamp_forms_normalise_to_utc_micros() {
        let table = [
            // The example: an offset without a colon.
            ("2025-03-01T10:00:00+0100", "2025-03-01T09:00:00.000000Z"),
            ("2025-03-01T10:00:00+01:00", "2025-03-01T09:00:00.000000Z"),
            ("2025-03-01T10:00:00+01", "2025-03-01T09:00:00.000000Z"),
            ("2025-03-01T04:30:00-05:30", "2025-03-01T10:00:00.000000Z"),
            // The live service (Postgres through PostgREST): microseconds, +00:00.
            (
                "2025-06-01T10:00:00.123456+00:00",
                "2025-06-01T10:00:00.123456Z",
            ),
            // Trailing zeros trimmed by Postgres.
            ("2025-06-01T10:00:00.1+00:00", "2025-06-01T10:00:00.100000Z"),
            // Postgres' text output: a space, and an hour-only offset.
            (
                "2024-01-15 10:30:00.123456+00",
                "2024-01-15T10:30:00.123456Z",
            ),
            ("2024-01-15 10:30:00 +0000", "2024-01-15T10:30:00.000000Z"),
            // The docs' milliseconds, and the mirror's own form, unchanged in value.
            ("2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999000Z"),
            ("2024-02-29T23:59:59.999123Z", "2024-02-29T23:59:59.999123Z"),
            ("2024-01-15t10:30:00z", "2024-01-15T10:30:00.000000Z"),
            ("2024-01-15T10:30Z", "2024-01-15T10:30:00.000000Z"),
            // Nanoseconds are truncated, never rounded into the next second or day.
            (
                "2024-12-31T23:59:59.999999999Z",
                "2024-12-31T23:59:59.999999Z",
            ),
            (
                "2024-01-15T10:30:00.1234567+00:00",
                "2024-01-15T10:30:00.123456Z",
            ),
            // No zone: UTC.
            ("2024-01-15T10:30:00.5", "2024-01-15T10:30:00.500000Z"),
            // An offset that crosses midnight and a month end.
            ("2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00.000000Z"),
        ];
        for (input, expected) in table {
            assert_eq!(
                normalize_timestamp(input).as_deref(),
                Some(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn non_timestamps_are_refused() {
        for bad in [
            "nope",
            "",
            "2023-02-29T10:00:00.000Z",
            "2024-13-01T10:00:00.000Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:60:00Z",
            "2024-01-15T10:30:60Z",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00+1",
            "2024-01-15T10:30:00+25:00",
            "2024-01-15T10:30:00 UTC",
            "2024-01-15X10:30:00Z",
            "15/01/2024 10:30",
            "2024-01-15",
        ] {
            assert_eq!(normalize_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_format_has_one_width_so_text_order_is_time_order() {
        let a = normalize_timestamp("2025-06-01T10:00:00.123Z").unwrap();
        let b = normalize_timestamp("2025-06-01T10:00:00.123456+00:00").unwrap();
        let c = normalize_timestamp("2025-06-01T10:00:00.124+00:00").unwrap();
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), 27);
        let now = format_timestamp(Utc::now());
        assert_eq!(now.len(), 27);
        assert_eq!(normalize_timestamp(&now).as_deref(), Some(now.as_str()));
    }
}
