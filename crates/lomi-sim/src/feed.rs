//! The org-wide transactions feed (`GET /transactions`, `GET /transactions/{id}`), as
//! `NOTES.md` ("The org-wide transactions feed") describes it: richer rows than the
//! per-customer endpoint, filters on `created_at` and on enum columns, newest first.
//!
//! The feed's extra fields (type, discount, fee, product, ...) are derived from the
//! transaction's id with [`mix64`], not drawn from the generator's stream, so adding the
//! feed changed nothing else in a seed's data set.

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};

use super::TimestampStyle;
use super::model::{
    Currency, CustomerId, ENVIRONMENT, Ts, Tx, TxId, TxKind, TxStatus, amount_text,
};
use super::rng::mix64;

/// The most rows the service's database layer returns for one request, silently: the
/// offset still uses the requested `pageSize` (NOTES.md, the silent 1,000-row cap).
pub(super) const FEED_ROW_LIMIT: usize = 1000;

/// Payment method codes the service knows (a filter on another value is a 500).
pub(super) const PAYMENT_METHODS: [&str; 7] = [
    "CARDS",
    "MOBILE_MONEY",
    "E_WALLET",
    "BANK_TRANSFER",
    "USSD",
    "QR_CODE",
    "APPLE_PAY",
];

/// Provider codes the service knows (a filter on another value is a 500).
pub(super) const PROVIDERS: [&str; 9] = [
    "WAVE", "ORANGE", "MTN", "MOOV", "MPESA", "STRIPE", "SPI", "AIRTEL", "PAYPAL",
];

/// Currency codes the service knows (a filter on another value is a 500).
pub(super) const CURRENCIES: [Currency; 6] = [
    Currency::Xof,
    Currency::Usd,
    Currency::Eur,
    Currency::Ghs,
    Currency::Ngn,
    Currency::Kes,
];

/// A validated feed request. Date bounds are instants in nanoseconds since the Unix
/// epoch, both inclusive; each list filter is `None` when absent.
#[derive(Debug, Default)]
pub(super) struct FeedQuery {
    pub(super) page: u64,
    /// As requested: the offset uses it even when fewer rows are served.
    pub(super) page_size: u64,
    pub(super) start_ns: Option<i128>,
    pub(super) end_ns: Option<i128>,
    pub(super) status: Option<Vec<TxStatus>>,
    pub(super) currency: Option<Vec<Currency>>,
    pub(super) method: Option<Vec<String>>,
    pub(super) kind: Option<Vec<TxKind>>,
    pub(super) provider: Option<Vec<String>>,
    pub(super) is_pos: Option<bool>,
}

impl FeedQuery {
    /// Whether `tx` passes every filter but the dates (the caller narrows those by
    /// binary search on the feed's order).
    pub(super) fn matches(&self, tx: &Tx) -> bool {
        let x = Extras::of(tx);
        self.status.as_ref().is_none_or(|s| s.contains(&tx.status))
            && self
                .currency
                .as_ref()
                .is_none_or(|c| c.contains(&tx.currency))
            && self.kind.as_ref().is_none_or(|k| k.contains(&x.kind))
            && self.is_pos.is_none_or(|p| p == x.is_pos)
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.iter().any(|m| m == tx.channel.method))
            && self
                .provider
                .as_ref()
                .is_none_or(|p| p.iter().any(|p| p == tx.channel.provider))
    }

    pub(super) fn is_unfiltered(&self) -> bool {
        self.status.is_none()
            && self.currency.is_none()
            && self.method.is_none()
            && self.kind.is_none()
            && self.provider.is_none()
            && self.is_pos.is_none()
    }
}

/// The feed-only fields of one transaction, all derived from its id. Amounts in the
/// currency's minor unit: `net = gross - discount - fee` exactly.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Extras {
    pub(super) kind: TxKind,
    pub(super) discount_minor: i64,
    pub(super) fee_minor: i64,
    pub(super) product: Option<u64>,
    pub(super) quantity: u32,
    pub(super) is_bnpl: bool,
    pub(super) is_pos: bool,
}

impl Extras {
    pub(super) fn of(tx: &Tx) -> Extras {
        let h = mix64(tx.id ^ 0x6665_6564_5f78_7421);
        let kind = match h % 100 {
            0..94 => TxKind::Payment,
            94..98 => TxKind::Refund,
            _ => TxKind::Payout,
        };
        let gross = tx.amount_minor;
        // One payment in ten carries a 5, 10 or 15% discount, rounded down.
        let discount_minor = if kind == TxKind::Payment && (h >> 8).is_multiple_of(10) {
            gross * (5 * (1 + (h >> 12) % 3) as i64) / 100
        } else {
            0
        };
        // The provider's fee on what was charged, rounded up; none on refunds and payouts.
        let fee_bps: i64 = match tx.channel.method {
            "CARDS" => 290,
            "BANK_TRANSFER" => 100,
            _ => 150,
        };
        let fee_minor = if kind == TxKind::Payment {
            ((gross - discount_minor) * fee_bps + 9_999) / 10_000
        } else {
            0
        };
        let product = (!(h >> 16).is_multiple_of(3)).then_some((h >> 20) % 40);
        Extras {
            kind,
            discount_minor,
            fee_minor,
            product,
            quantity: if product.is_some() {
                1 + ((h >> 28) % 3) as u32
            } else {
                1
            },
            is_bnpl: (h >> 32).is_multiple_of(50),
            is_pos: tx.channel.method == "CARDS" && (h >> 40).is_multiple_of(5),
        }
    }
}

/// One feed row: the per-customer row's fields and the feed's own
/// (`GET /transactions` and `GET /transactions/{id}` serve the same form).
pub(super) struct FeedRow<'a> {
    pub(super) tx: &'a Tx,
    pub(super) customer: CustomerId,
    pub(super) organization_id: &'a str,
}

impl Serialize for FeedRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tx = self.tx;
        let x = Extras::of(tx);
        let digits = tx.currency.minor_digits();
        let number = |minor: i64| -> Result<serde_json::Number, S::Error> {
            amount_text(minor, digits).parse().map_err(S::Error::custom)
        };
        let net = tx.amount_minor - x.discount_minor - x.fee_minor;
        let product = x.product.map(|p| format!("prod_{:016x}", mix64(p ^ 0x70)));
        let price = x.product.map(|p| format!("price_{:016x}", mix64(p ^ 0x71)));
        let subscription = tx
            .description
            .starts_with("Abonnement")
            .then(|| format!("sub_{:016x}", mix64(self.customer.0 ^ 0x73)));
        let spi = (tx.channel.provider == "SPI").then(|| format!("spi_{:016x}", mix64(tx.id)));
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("transaction_id", &TxId(tx.id))?;
        m.serialize_entry("organization_id", self.organization_id)?;
        m.serialize_entry("customer_id", &self.customer)?;
        m.serialize_entry("product_id", &product)?;
        m.serialize_entry("subscription_id", &subscription)?;
        m.serialize_entry("price_id", &price)?;
        m.serialize_entry("transaction_type", x.kind.as_str())?;
        m.serialize_entry("status", tx.status.as_str())?;
        m.serialize_entry("description", &tx.description)?;
        m.serialize_entry("quantity", &x.quantity)?;
        m.serialize_entry("metadata", &tx.metadata)?;
        m.serialize_entry("gross_amount", &number(tx.amount_minor)?)?;
        m.serialize_entry("discount_amount", &number(x.discount_minor)?)?;
        m.serialize_entry("fee_amount", &number(x.fee_minor)?)?;
        m.serialize_entry("net_amount", &number(net)?)?;
        m.serialize_entry("currency_code", tx.currency.code())?;
        m.serialize_entry("provider_code", tx.channel.provider)?;
        m.serialize_entry("payment_method_code", tx.channel.method)?;
        m.serialize_entry("is_bnpl", &x.is_bnpl)?;
        m.serialize_entry("is_pos", &x.is_pos)?;
        m.serialize_entry("environment", ENVIRONMENT)?;
        m.serialize_entry("spi_transaction_id", &spi)?;
        m.serialize_entry("created_at", &Ts(tx.created_ms))?;
        m.serialize_entry("updated_at", &Ts(tx.updated_ms))?;
        m.end()
    }
}

/// The instant a client sees for a millisecond timestamp served in `style`, in
/// nanoseconds: the micro and nano styles show digits below the millisecond
/// ([`super::restyle::style_timestamp`] derives them from the instant), and a bound a
/// client took from a served row must compare with what it saw.
pub(super) fn served_nanos(ms: i64, style: TimestampStyle) -> i128 {
    let base = i128::from(ms) * 1_000_000;
    let extra = mix64(ms as u64);
    let micros = i128::from((extra % 1000) as u16) * 1000;
    let nanos = i128::from(((extra >> 10) % 1000) as u16);
    match style {
        TimestampStyle::PgMicro | TimestampStyle::Space => base + micros,
        TimestampStyle::ZNanos => base + micros + nanos,
        TimestampStyle::ZMillis
        | TimestampStyle::OffsetNoColon
        | TimestampStyle::NegativeOffset => base,
    }
}

/// An ISO 8601 date or timestamp, leniently: a date alone (midnight UTC, as Postgres
/// casts it), `T` or a space, any fraction up to nanoseconds, `Z`, `+00:00`, `+0000`,
/// `+00` or no offset (UTC); a `+` turned into a space by a query string that did not
/// encode it. Nanoseconds since the Unix epoch; `None` for anything else.
pub(super) fn parse_instant(text: &str) -> Option<i128> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(nanos_of(d.and_hms_opt(0, 0, 0)?.and_utc()));
    }
    let mut s: String = t.to_owned();
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        s.replace_range(10..11, "T");
    }
    // A space after the time where an offset's `+` was.
    if let Some(at) = s.get(19..).and_then(|tail| tail.find(' ')) {
        s.replace_range(19 + at..20 + at, "+");
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(&s) {
        return Some(nanos_of(dt.to_utc()));
    }
    if let Ok(dt) = DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%#z") {
        return Some(nanos_of(dt.to_utc()));
    }
    let naive = NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(nanos_of(naive.and_utc()))
}

fn nanos_of(t: chrono::DateTime<chrono::Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_in_every_form_a_client_sends() {
        let base = 1_748_772_000_123_456_000i128; // 2025-06-01T10:00:00.123456Z
        for form in [
            "2025-06-01T10:00:00.123456Z",
            "2025-06-01T10:00:00.123456+00:00",
            "2025-06-01T10:00:00.123456 00:00",
            "2025-06-01 10:00:00.123456+00",
            "2025-06-01T11:00:00.123456+0100",
            "2025-06-01T05:00:00.123456-05:00",
            "2025-06-01T10:00:00.123456",
        ] {
            assert_eq!(parse_instant(form), Some(base), "{form}");
        }
        assert_eq!(
            parse_instant("2025-06-01"),
            Some(1_748_736_000_000_000_000),
            "a date is midnight UTC"
        );
        assert_eq!(
            parse_instant("2025-06-01T10:00:00.123456789Z"),
            Some(base + 789)
        );
        for garbage in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-06-01T25:00:00Z",
            "1748772000",
        ] {
            assert_eq!(parse_instant(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn served_instants_follow_the_timestamp_style() {
        let ms = 1_748_772_000_123i64;
        let text = Ts(ms).to_string();
        for style in [
            TimestampStyle::ZMillis,
            TimestampStyle::PgMicro,
            TimestampStyle::Space,
            TimestampStyle::ZNanos,
            TimestampStyle::OffsetNoColon,
            TimestampStyle::NegativeOffset,
        ] {
            let served =
                super::super::restyle::style_timestamp(&text, style).unwrap_or(text.clone());
            assert_eq!(
                parse_instant(&served),
                Some(served_nanos(ms, style)),
                "{style:?}"
            );
        }
    }
}
