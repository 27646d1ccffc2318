//! The simulated records and their JSON forms.
//!
//! Customer JSON is rendered once per change and cached on the record, so that serving a
//! list page is a concatenation of cached strings rather than 200 serializations.
//! Transactions are small and read one customer at a time, so they are rendered on demand.

use std::fmt;

use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::IdFormat;
use super::rng::mix64;

/// What the `environment` field says: the simulator plays a sandbox (test keys).
pub(super) const ENVIRONMENT: &str = "test";

/// How a customer pays over time; drives both the initial data and `add_tx` mutations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Payer {
    /// Never has a transaction: the mirror must not waste requests on these forever.
    Never,
    Occasional,
    Frequent,
}

impl Payer {
    /// Mean transaction count of a frequent payer relative to an occasional one; also their
    /// relative chance of being picked by an `add_tx` mutation.
    pub(super) const FREQUENT_FACTOR: f64 = 8.0;

    /// Integer weight for picking the payer of a new transaction (0 for never-payers).
    pub(super) fn add_tx_weight(self) -> u64 {
        match self {
            Payer::Never => 0,
            Payer::Occasional => 1,
            Payer::Frequent => Self::FREQUENT_FACTOR as u64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Currency {
    Xof,
    Usd,
    Eur,
    Ghs,
    Ngn,
    Kes,
}

impl Currency {
    pub(super) fn code(self) -> &'static str {
        match self {
            Currency::Xof => "XOF",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Ghs => "GHS",
            Currency::Ngn => "NGN",
            Currency::Kes => "KES",
        }
    }

    /// Digits of the minor unit: amounts are stored as integers of the minor unit.
    pub(super) fn minor_digits(self) -> u32 {
        match self {
            Currency::Xof => 0,
            _ => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TxStatus {
    Pending,
    Completed,
    Failed,
    Refunded,
    Expired,
    /// Listed by the vendor's feed docs; the generator never produces it, but the feed's
    /// `status` filter accepts it.
    Cancelled,
}

impl TxStatus {
    pub(super) const ALL: [TxStatus; 6] = [
        TxStatus::Pending,
        TxStatus::Completed,
        TxStatus::Failed,
        TxStatus::Refunded,
        TxStatus::Expired,
        TxStatus::Cancelled,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Completed => "completed",
            TxStatus::Failed => "failed",
            TxStatus::Refunded => "refunded",
            TxStatus::Expired => "expired",
            TxStatus::Cancelled => "cancelled",
        }
    }
}

/// The feed's `transaction_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TxKind {
    Payment,
    Refund,
    Payout,
}

impl TxKind {
    pub(super) const ALL: [TxKind; 3] = [TxKind::Payment, TxKind::Refund, TxKind::Payout];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            TxKind::Payment => "payment",
            TxKind::Refund => "refund",
            TxKind::Payout => "payout",
        }
    }
}

/// A payment method and the provider that carried it.
#[derive(Debug)]
pub(super) struct Channel {
    pub(super) method: &'static str,
    pub(super) provider: &'static str,
}

#[derive(Clone, Debug)]
pub(super) struct Tx {
    pub(super) id: u64,
    pub(super) created_ms: i64,
    /// The last status change (the feed's `updated_at`); bumped by every change.
    pub(super) updated_ms: i64,
    /// Integer amount in the currency's minor unit: exact, never a float.
    pub(super) amount_minor: i64,
    pub(super) currency: Currency,
    pub(super) status: TxStatus,
    pub(super) channel: &'static Channel,
    pub(super) description: Box<str>,
    pub(super) metadata: Option<Box<Map<String, Value>>>,
}

impl Tx {
    /// Bumps `updated_at` to now, keeping it strictly increasing and >= `created_at`.
    pub(super) fn touch(&mut self, now_ms: i64) {
        self.updated_ms = now_ms.max(self.updated_ms + 1).max(self.created_ms);
    }
}

/// The fields a merchant controls (the docs' request body).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Profile {
    pub(super) name: String,
    pub(super) email: Option<String>,
    pub(super) phone_number: Option<String>,
    pub(super) whatsapp_number: Option<String>,
    pub(super) country: Option<String>,
    pub(super) city: Option<String>,
    pub(super) address: Option<String>,
    pub(super) postal_code: Option<String>,
    pub(super) is_business: bool,
    pub(super) metadata: Map<String, Value>,
}

#[derive(Debug)]
pub(super) struct Customer {
    pub(super) id: u64,
    /// Index into the generator's region table; keeps later edits (new city, new name)
    /// consistent with the customer's country.
    pub(super) region: usize,
    pub(super) profile: Profile,
    pub(super) created_ms: i64,
    pub(super) updated_ms: i64,
    pub(super) payer: Payer,
    pub(super) deleted: bool,
    /// Oldest first; served reversed (newest first).
    pub(super) txs: Vec<Tx>,
    /// The JSON of `GET /customers/{id}`.
    json: Box<str>,
    /// The JSON of a list item when it differs from `json` (live quirks mode).
    list_json: Option<Box<str>>,
}

/// Settings that shape the JSON of every customer.
#[derive(Debug)]
pub(super) struct Render {
    pub(super) id_key: &'static str,
    pub(super) id_format: IdFormat,
    pub(super) organization_id: String,
    pub(super) live_quirks: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Full,
    ListItem,
}

impl Customer {
    pub(super) fn new(
        id: u64,
        region: usize,
        profile: Profile,
        created_ms: i64,
        updated_ms: i64,
        payer: Payer,
        render: &Render,
    ) -> Customer {
        let mut customer = Customer {
            id,
            region,
            profile,
            created_ms,
            updated_ms,
            payer,
            deleted: false,
            txs: Vec::new(),
            json: Box::default(),
            list_json: None,
        };
        customer.refresh(render);
        customer
    }

    /// Recomputes the cached JSON; call after every change of the customer.
    pub(super) fn refresh(&mut self, render: &Render) {
        self.json = self.render(render, Form::Full);
        self.list_json = render
            .live_quirks
            .then(|| self.render(render, Form::ListItem));
    }

    fn render(&self, render: &Render, form: Form) -> Box<str> {
        serde_json::to_string(&CustomerView {
            customer: self,
            render,
            form,
        })
        .expect("a customer view only holds strings, bools and JSON maps")
        .into()
    }

    pub(super) fn json(&self) -> &str {
        &self.json
    }

    pub(super) fn list_json(&self) -> &str {
        self.list_json.as_deref().unwrap_or(&self.json)
    }

    /// Sort key of the list order: newest first, then the larger id first.
    pub(super) fn order_key(&self) -> (i64, u64) {
        (self.created_ms, self.id)
    }

    /// Bumps `updated_at` to now, keeping it strictly increasing and >= `created_at`.
    pub(super) fn touch(&mut self, now_ms: i64) {
        self.updated_ms = now_ms.max(self.updated_ms + 1).max(self.created_ms);
    }
}

struct CustomerView<'a> {
    customer: &'a Customer,
    render: &'a Render,
    form: Form,
}

impl Serialize for CustomerView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.customer;
        let p = &c.profile;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry(self.render.id_key, &CustomerId(c.id, self.render.id_format))?;
        m.serialize_entry("organization_id", &self.render.organization_id)?;
        m.serialize_entry("name", &p.name)?;
        m.serialize_entry("email", &p.email)?;
        m.serialize_entry("phone_number", &p.phone_number)?;
        m.serialize_entry("whatsapp_number", &p.whatsapp_number)?;
        m.serialize_entry("country", &p.country)?;
        m.serialize_entry("city", &p.city)?;
        m.serialize_entry("address", &p.address)?;
        m.serialize_entry("postal_code", &p.postal_code)?;
        m.serialize_entry("is_business", &p.is_business)?;
        match self.form {
            Form::Full => {
                m.serialize_entry("metadata", &p.metadata)?;
                m.serialize_entry("environment", ENVIRONMENT)?;
            }
            // The live list endpoint leaves metadata out (null) and has no environment.
            Form::ListItem => m.serialize_entry("metadata", &())?,
        }
        m.serialize_entry("created_at", &Ts(c.created_ms))?;
        m.serialize_entry("updated_at", &Ts(c.updated_ms))?;
        m.end()
    }
}

/// A customer's transactions as the transactions endpoint returns them: newest first.
pub(super) struct TxList<'a>(pub(super) &'a [Tx]);

impl Serialize for TxList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for tx in self.0.iter().rev() {
            seq.serialize_element(&TxView(tx))?;
        }
        seq.end()
    }
}

struct TxView<'a>(&'a Tx);

impl Serialize for TxView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tx = self.0;
        // With serde_json's arbitrary_precision feature a Number keeps its exact text, so
        // "10.5" goes out as the JSON number 10.5 without ever being an f64.
        let amount: serde_json::Number = amount_text(tx.amount_minor, tx.currency.minor_digits())
            .parse()
            .map_err(S::Error::custom)?;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("transaction_id", &TxId(tx.id))?;
        m.serialize_entry("description", &tx.description)?;
        m.serialize_entry("gross_amount", &amount)?;
        m.serialize_entry("currency_code", tx.currency.code())?;
        m.serialize_entry("status", tx.status.as_str())?;
        m.serialize_entry("payment_method_code", tx.channel.method)?;
        m.serialize_entry("provider_code", tx.channel.provider)?;
        m.serialize_entry("metadata", &tx.metadata)?;
        m.serialize_entry("created_at", &Ts(tx.created_ms))?;
        m.end()
    }
}

/// The decimal text of an amount held in minor units, with trailing zeros dropped the way
/// a JSON number from the live service shows them: 1050 cents -> "10.5", 1200 -> "12".
pub(super) fn amount_text(minor: i64, digits: u32) -> String {
    if digits == 0 {
        return minor.to_string();
    }
    let scale = 10i64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let whole = (minor / scale).unsigned_abs();
    let mut frac = (minor % scale).unsigned_abs();
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let mut width = digits as usize;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    format!("{sign}{whole}.{frac:0width$}")
}

/// A customer id: `cus_` and 16 lowercase hex digits, or a UUID that starts with the
/// same 16 digits (the rest derived from them). Fixed width and the number first, so
/// comparing the numbers orders the ids exactly as comparing the strings would.
pub(super) struct CustomerId(pub(super) u64, pub(super) IdFormat);

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match self.1 {
            IdFormat::Prefixed => write!(f, "cus_{n:016x}"),
            // Version 4 and variant bits where a UUID has them, so it looks the part.
            IdFormat::Uuid => {
                let m = mix64(n);
                write!(
                    f,
                    "{:08x}-{:04x}-4{:03x}-8{:x}{:02x}-{:012x}",
                    n >> 32,
                    (n >> 16) & 0xffff,
                    (n >> 4) & 0xfff,
                    n & 0xf,
                    m >> 56,
                    m & 0xffff_ffff_ffff
                )
            }
        }
    }
}

impl Serialize for CustomerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Parses a customer id as [`CustomerId`] renders it in `format`; anything else
/// cannot exist.
pub(super) fn parse_customer_id(s: &str, format: IdFormat) -> Option<u64> {
    match format {
        IdFormat::Prefixed => parse_hex16(s.strip_prefix("cus_")?),
        // The number's digits are the first three groups and the one after the variant
        // digit; the rest must be what rendering that number gives.
        IdFormat::Uuid => {
            if s.len() != 36 || !s.is_ascii() {
                return None;
            }
            let n = parse_hex16(&[&s[0..8], &s[9..13], &s[15..18], &s[20..21]].concat())?;
            (CustomerId(n, format).to_string() == s).then_some(n)
        }
    }
}

/// Exactly 16 lowercase hex digits, as ids are rendered.
fn parse_hex16(hex: &str) -> Option<u64> {
    let canonical = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if canonical {
        u64::from_str_radix(hex, 16).ok()
    } else {
        None
    }
}

pub(super) struct TxId(pub(super) u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx_{:016x}", self.0)
    }
}

impl Serialize for TxId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A UTC timestamp in milliseconds, shown as RFC 3339 with milliseconds
/// (`2024-01-15T10:30:00.123Z`). Hand-formatted because it is on every hot path.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ts(pub(super) i64);

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAY_MS: i64 = 86_400_000;
        let days = self.0.div_euclid(DAY_MS);
        let ms = self.0.rem_euclid(DAY_MS);
        let (y, m, d) = civil_from_days(days);
        let (h, min, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); H. Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_chrono() {
        let samples = [
            0,
            1_705_314_600_123,
            1_672_531_200_000,
            1_782_863_999_999,
            951_782_400_000, // 2000-02-29
            -1,
        ];
        for ms in samples {
            let ours = Ts(ms).to_string();
            let chrono = chrono::DateTime::from_timestamp_millis(ms)
                .expect("in range")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(ours, chrono, "{ms}");
        }
        assert_eq!(
            Ts(1_705_314_600_123).to_string(),
            "2024-01-15T10:30:00.123Z"
        );
    }

    #[test]
    fn amounts_print_exactly() {
        assert_eq!(amount_text(10_000, 0), "10000");
        assert_eq!(amount_text(1050, 2), "10.5");
        assert_eq!(amount_text(10, 2), "0.1");
        assert_eq!(amount_text(1, 2), "0.01");
        assert_eq!(amount_text(1200, 2), "12");
        assert_eq!(amount_text(1234, 2), "12.34");
        assert_eq!(amount_text(-1050, 2), "-10.5");
    }

    #[test]
    fn customer_ids_round_trip_and_reject_lookalikes() {
        let id = CustomerId(0x00ab_cdef_0123_4567, IdFormat::Prefixed).to_string();
        assert_eq!(id, "cus_00abcdef01234567");
        assert_eq!(
            parse_customer_id(&id, IdFormat::Prefixed),
            Some(0x00ab_cdef_0123_4567)
        );
        assert_eq!(parse_customer_id(&id, IdFormat::Uuid), None);
        for bad in [
            "cus_00ABCDEF01234567",
            "cus_+0abcdef01234567",
            "cus_abc",
            "00abcdef01234567",
            "cus_00abcdef012345678",
        ] {
            assert_eq!(parse_customer_id(bad, IdFormat::Prefixed), None, "{bad}");
        }
    }

    #[test]
    fn uuid_ids_round_trip_keep_numeric_order_and_reject_lookalikes() {
        let n = 0x00ab_cdef_0123_4567;
        let id = CustomerId(n, IdFormat::Uuid).to_string();
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("00abcdef-0123-4456-87"), "{id}");
        assert_eq!(parse_customer_id(&id, IdFormat::Uuid), Some(n));
        assert_eq!(parse_customer_id(&id, IdFormat::Prefixed), None);
        // Numeric order is string order, as for prefixed ids.
        let ids: Vec<u64> = vec![0, 1, 0xf, 0x10, 0xffff, 1 << 32, u64::MAX - 1, u64::MAX];
        for pair in ids.windows(2) {
            let (a, b) = (
                CustomerId(pair[0], IdFormat::Uuid).to_string(),
                CustomerId(pair[1], IdFormat::Uuid).to_string(),
            );
            assert!(a < b, "{a} vs {b}");
            assert_eq!(parse_customer_id(&a, IdFormat::Uuid), Some(pair[0]));
        }
        // The same number with another tail, upper case, or a wrong length is no id.
        let other_tail = format!("{}000000000000", &id[..24]);
        let upper = id.to_uppercase();
        for bad in [other_tail.as_str(), upper.as_str(), &id[1..], "not-a-uuid"] {
            assert_eq!(parse_customer_id(bad, IdFormat::Uuid), None, "{bad}");
        }
    }
}
