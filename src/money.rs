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

/// An exact decimal read from text (`-12.50`, `10000`, `1e3`): a `rust_decimal`, whose
/// 96-bit mantissa holds 28 significant digits. That is more than any amount
/// [`Decimal::to_minor`] can return needs (an `i64` has 19 digits, shifted by at most 3
/// for the minor unit); a text that needs more (digits past 28 decimal places that
/// are not zeros, or a magnitude past 7.9e28) cannot be a whole count of minor units
/// that fits an `i64`, and is refused, as is any out-of-range value: `None`, never
/// a panic or a rounded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal(rust_decimal::Decimal);

impl Decimal {
    /// Parses JSON number syntax (and a plain decimal string such as `.5` or `+1`).
    /// Returns `None` for anything else, e.g. `NaN`, `1,5`, `1_000` or an empty string,
    /// and for a value `rust_decimal` cannot hold exactly. The syntax is checked here;
    /// the arithmetic is `rust_decimal`'s.
    pub fn parse(text: &str) -> Option<Decimal> {
        let s = text.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], Some(s[i + 1..].parse::<i32>().ok()?)),
            None => (s, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        // JSON's digits only: rust_decimal would also read `_` separators and signs.
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // Leading and trailing zeros say nothing of the value, and past 28 digits they
        // would make the exact parse refuse a value it holds.
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let canonical = format!(
            "{}{}.{}",
            if negative { "-" } else { "" },
            if int.is_empty() { "0" } else { int },
            if frac.is_empty() { "0" } else { frac }
        );
        let value = rust_decimal::Decimal::from_str_exact(&canonical).ok()?;
        match exponent {
            None => Some(Decimal(value)),
            Some(e) => scale_by_power_of_ten(value, e).map(Decimal),
        }
    }

    /// The value in units of 10^-`exponent`, if it is a whole number of them and fits
    /// in an `i64`. `10.5` USD (exponent 2) is `1050`; `10.505` USD is `None`.
    pub fn to_minor(&self, exponent: u32) -> Option<i64> {
        use rust_decimal::prelude::ToPrimitive;
        let minor = scale_by_power_of_ten(self.0, i32::try_from(exponent).ok()?)?;
        if !minor.fract().is_zero() {
            return None;
        }
        minor.to_i64()
    }
}

/// `value` × 10^`e`, exactly, or `None` when the result does not fit (no rounding: a
/// digit pushed past 28 decimal places that is not a zero makes it `None`).
fn scale_by_power_of_ten(value: rust_decimal::Decimal, e: i32) -> Option<rust_decimal::Decimal> {
    if value.is_zero() {
        return Some(rust_decimal::Decimal::ZERO);
    }
    let ten = rust_decimal::Decimal::TEN;
    let mut v = value;
    if e >= 0 {
        for _ in 0..e {
            v = v.checked_mul(ten)?;
        }
    } else {
        // Dividing moves the point: exact while the scale stays within 28 places.
        let scale = value.normalize().scale() as i64 - i64::from(e);
        if scale > 28 {
            return None;
        }
        for _ in 0..e.unsigned_abs() {
            v = v.checked_div(ten)?;
        }
    }
    Some(v)
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
        for bad in ["1_000", "+", "-.", "e5", "1e5.5", "0x10", " "] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
    }

    /// Past rust_decimal's range and precision: refused (`None`), never a panic and never
    /// a rounded value; trailing zeros past 28 places are no reason to refuse.
    #[test]
    fn values_past_28_digits_are_refused_exactly_never_rounded() {
        let zeros = "0".repeat(40);
        assert_eq!(minor(&format!("10.{zeros}"), "USD"), Some(1000));
        assert_eq!(minor(&format!("10.5{zeros}e0"), "USD"), Some(1050));
        // A 1 at the 30th place: not whole cents, whatever rounding would say.
        assert_eq!(minor(&format!("10.{}1", "0".repeat(29)), "USD"), None);
        assert_eq!(minor("1e-40", "USD"), None);
        assert_eq!(minor("79228162514264337593543950336", "XOF"), None);
        assert_eq!(minor("-1e29", "XOF"), None);
        assert_eq!(minor("1e-99999", "XOF"), None);
        assert_eq!(minor("9223372036854775807", "XOF"), Some(i64::MAX));
        assert_eq!(minor("-9223372036854775808", "XOF"), Some(i64::MIN));
        assert_eq!(minor("9223372036854775808", "XOF"), None);
        assert_eq!(minor("92233720368547758.07", "USD"), Some(i64::MAX));
        assert_eq!(minor("92233720368547758.08", "USD"), None);
        assert_eq!(minor("-0", "USD"), Some(0));
        assert_eq!(minor("-.5", "USD"), Some(-50));
        assert_eq!(minor("1.", "USD"), Some(100));
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
