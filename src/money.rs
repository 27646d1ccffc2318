//! Exact money. The API sends `gross_amount` as a JSON number (a Postgres NUMERIC), so
//! it is read as text (serde_json's `arbitrary_precision`) and converted to an integer
//! count of the currency's minor unit without ever passing through `f64`.

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
/// Unknown currencies are assumed to have cents, the common case.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    const NONE: [&str; 15] = [
        "XOF", "XAF", "GNF", "RWF", "UGX", "JPY", "KRW", "CLP", "VND", "BIF", "DJF", "KMF", "PYG",
        "VUV", "XPF",
    ];
    const THOUSANDTHS: [&str; 7] = ["BHD", "KWD", "OMR", "TND", "JOD", "IQD", "LYD"];
    // Called for every transaction: compare in place rather than upper-case a copy.
    let is = |codes: &[&str]| codes.iter().any(|c| c.eq_ignore_ascii_case(currency));
    if is(&NONE) {
        0
    } else if is(&THOUSANDTHS) {
        3
    } else {
        2
    }
}

/// A decimal written as text: `-12.50`, `10000`, `1e3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// All significant digits, without the point.
    digits: String,
    /// How many of `digits` lie after the decimal point (may be negative after an exponent).
    scale: i64,
}

impl Decimal {
    /// Parses JSON number syntax (and a plain decimal string). Returns `None` for
    /// anything else, e.g. `NaN`, `1,5` or an empty string.
    pub fn parse(text: &str) -> Option<Decimal> {
        let s = text.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
            None => (s, 0),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        if exponent.unsigned_abs() > 4000 {
            return None;
        }
        Some(Decimal {
            negative,
            digits: format!("{int}{frac}"),
            scale: frac.len() as i64 - exponent,
        })
    }

    /// The value in units of 10^-`exponent`, if it is a whole number of them and fits
    /// in an `i64`. `10.5` USD (exponent 2) is `1050`; `10.505` USD is `None`.
    pub fn to_minor(&self, exponent: u32) -> Option<i64> {
        let shift = exponent as i64 - self.scale;
        let mut digits = self.digits.trim_start_matches('0').to_string();
        if shift >= 0 {
            digits.extend(std::iter::repeat_n('0', shift as usize));
        } else {
            let cut = (-shift) as usize;
            if digits.len() < cut {
                if digits.bytes().any(|b| b != b'0') {
                    return None;
                }
                digits.clear();
            } else {
                let (keep, dropped) = digits.split_at(digits.len() - cut);
                if dropped.bytes().any(|b| b != b'0') {
                    return None;
                }
                digits = keep.to_string();
            }
        }
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Some(0);
        }
        if digits.len() > 19 {
            return None;
        }
        let magnitude: i128 = digits.parse().ok()?;
        let value = if self.negative { -magnitude } else { magnitude };
        i64::try_from(value).ok()
    }
}

/// Formats minor units as a plain decimal: `(1050, 2)` is `"10.50"`, `(500, 0)` is `"500"`.
pub fn format_minor(minor: i64, exponent: u32) -> String {
    if exponent == 0 {
        return minor.to_string();
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let div = 10u64.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        abs / div,
        abs % div,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minor(text: &str, currency: &str) -> Option<i64> {
        Decimal::parse(text)?.to_minor(minor_unit_exponent(currency))
    }

    #[test]
    fn whole_xof_amounts_are_their_own_minor_units() {
        assert_eq!(minor("10000", "XOF"), Some(10000));
        assert_eq!(minor("10000.00", "XOF"), Some(10000));
        assert_eq!(minor("10000.5", "XOF"), None);
        // Currency codes are matched whatever their case.
        assert_eq!(minor("10000", "xof"), Some(10000));
        assert_eq!(minor_unit_exponent("Kwd"), 3);
    }

    #[test]
    fn decimal_amounts_convert_exactly() {
        assert_eq!(minor("10.5", "USD"), Some(1050));
        assert_eq!(minor("0.1", "EUR"), Some(10));
        assert_eq!(minor("0.2", "EUR"), Some(20));
        assert_eq!(minor("249.99", "USD"), Some(24999));
        assert_eq!(minor("-3.07", "USD"), Some(-307));
        assert_eq!(minor(".5", "USD"), Some(50));
        assert_eq!(minor("10.505", "USD"), None);
        assert_eq!(minor("10.500", "USD"), Some(1050));
    }

    #[test]
    fn exponents_are_applied_without_floats() {
        assert_eq!(minor("1e3", "XOF"), Some(1000));
        assert_eq!(minor("1.5E2", "USD"), Some(15000));
        assert_eq!(minor("15e-1", "USD"), Some(150));
        assert_eq!(minor("1e-9", "USD"), None);
        assert_eq!(minor("0e-9", "USD"), Some(0));
    }

    #[test]
    fn garbage_and_overflow_are_rejected() {
        for bad in ["", "-", ".", "abc", "1,5", "NaN", "1e", "--1", "1.2.3"] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
        assert_eq!(minor("99999999999999999999999", "XOF"), None);
        assert_eq!(minor("1e99999", "XOF"), None);
    }

    #[test]
    fn the_currencies_table_agrees_with_the_exponents_here() {
        let sql = include_str!("store/migrations/002_views.sql");
        let start = sql.find("INSERT INTO currencies").unwrap();
        let rows = &sql[start..start + sql[start..].find(';').unwrap()];
        let mut seen = 0;
        for tuple in rows.split('(').skip(2) {
            let parts: Vec<&str> = tuple
                .split(',')
                .map(|p| p.trim().trim_matches(|c| c == '\'' || c == ')'))
                .collect();
            let (code, exponent): (&str, u32) = (parts[0], parts[1].parse().unwrap());
            assert_eq!(minor_unit_exponent(code), exponent, "{code}");
            seen += 1;
        }
        assert!(seen > 20);
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_minor(1050, 2), "10.50");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(30, 2), "0.30");
        assert_eq!(format_minor(500, 0), "500");
        assert_eq!(format_minor(1, 3), "0.001");
    }
}
