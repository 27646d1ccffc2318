//! Misbehaviours that change a successful body (issue 12): timestamps written in
//! another style, and fields of an unexpected type. Both are applied to the served JSON
//! after it is rendered, and to the truth in the same way, so `/_sim/truth` always says
//! what the API sent. Only used when switched on: parsing and re-serializing every body
//! would slow the simulator's normal paths.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::rng::mix64;

/// How the simulator writes timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampStyle {
    /// `2025-06-01T10:00:00.123Z`, as the vendor docs show them.
    #[default]
    ZMillis,
    /// `2025-06-01T10:00:00.123456+00:00`, as the live service passes Postgres values on:
    /// microseconds (trailing zeros trimmed, none at all when zero) and `+00:00`.
    PgMicro,
    /// `2025-06-01T11:00:00.123+0100`: local time with an offset without a colon.
    OffsetNoColon,
    /// `2025-06-01T05:00:00.123-05:00`: a negative offset.
    NegativeOffset,
    /// `2025-06-01 10:00:00.123456+00`: Postgres' text output (a space, an hour offset).
    Space,
    /// `2025-06-01T10:00:00.123456789Z`: nanoseconds.
    ZNanos,
}

/// One field of one record served with another value (often of another type): the
/// record is the customer or transaction whose id is `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOverride {
    pub id: String,
    pub field: String,
    pub value: Value,
}

/// What to change in successful bodies.
#[derive(Clone, Debug, Default)]
pub(super) struct Restyle {
    pub(super) style: TimestampStyle,
    pub(super) overrides: Vec<FieldOverride>,
}

impl Restyle {
    pub(super) fn is_active(&self) -> bool {
        self.style != TimestampStyle::ZMillis || !self.overrides.is_empty()
    }

    /// Rewrites a JSON body (a customer, a list page or a transactions array); a body
    /// that is not JSON is returned as it was.
    pub(super) fn body(&self, body: Vec<u8>) -> Vec<u8> {
        let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        match &mut v {
            Value::Array(items) => items.iter_mut().for_each(|i| self.record(i)),
            Value::Object(o) => match o.get_mut("customers") {
                Some(Value::Array(items)) => items.iter_mut().for_each(|i| self.record(i)),
                _ => self.record(&mut v),
            },
            _ => {}
        }
        serde_json::to_vec(&v).unwrap_or(body)
    }

    /// Rewrites the truth (`{"customers": [...], "transactions": {"<id>": [...]}}`).
    pub(super) fn truth(&self, truth: &mut Value) {
        if let Some(Value::Array(cs)) = truth.get_mut("customers") {
            cs.iter_mut().for_each(|c| self.record(c));
        }
        if let Some(Value::Object(txs)) = truth.get_mut("transactions") {
            for list in txs.values_mut() {
                if let Value::Array(items) = list {
                    items.iter_mut().for_each(|t| self.record(t));
                }
            }
        }
    }

    fn record(&self, v: &mut Value) {
        let Value::Object(o) = v else { return };
        for key in ["created_at", "updated_at"] {
            if let Some(Value::String(s)) = o.get(key)
                && let Some(styled) = style_timestamp(s, self.style)
            {
                o.insert(key.into(), Value::String(styled));
            }
        }
        let id = record_id(o);
        for f in &self.overrides {
            if id.as_deref() == Some(f.id.as_str()) {
                o.insert(f.field.clone(), f.value.clone());
            }
        }
    }
}

fn record_id(o: &Map<String, Value>) -> Option<String> {
    ["transaction_id", "customer_id", "id"]
        .iter()
        .find_map(|k| o.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

/// A `...sssZ` timestamp in `style`; `None` to leave it as it is. The digits below the
/// millisecond that the micro and nano styles show are derived from the instant, so a
/// timestamp is written the same way every time.
pub(super) fn style_timestamp(s: &str, style: TimestampStyle) -> Option<String> {
    use chrono::{DateTime, Duration, Utc};
    if style == TimestampStyle::ZMillis {
        return None;
    }
    let t: DateTime<Utc> = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    let ms = t.timestamp_millis();
    let extra = mix64(ms as u64);
    let micros = ms.rem_euclid(1000) * 1000 + (extra % 1000) as i64;
    let nanos = micros * 1000 + ((extra >> 10) % 1000) as i64;
    let trimmed = |micros: i64| {
        let f = format!("{micros:06}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            String::new()
        } else {
            format!(".{f}")
        }
    };
    let secs =
        |t: DateTime<Utc>, sep: &str| t.format(&format!("%Y-%m-%d{sep}%H:%M:%S")).to_string();
    let millis = |t: DateTime<Utc>| t.format("%.3f").to_string();
    Some(match style {
        TimestampStyle::ZMillis => return None,
        TimestampStyle::PgMicro => format!("{}{}+00:00", secs(t, "T"), trimmed(micros)),
        TimestampStyle::Space => format!("{}{}+00", secs(t, " "), trimmed(micros)),
        TimestampStyle::ZNanos => format!("{}.{nanos:09}Z", secs(t, "T")),
        TimestampStyle::OffsetNoColon => {
            let local = t + Duration::hours(1);
            format!("{}{}+0100", secs(local, "T"), millis(local))
        }
        TimestampStyle::NegativeOffset => {
            let local = t - Duration::hours(5);
            format!("{}{}-05:00", secs(local, "T"), millis(local))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_is_the_same_instant() {
        let s = "2025-03-01T09:00:00.120Z";
        let base = chrono::DateTime::parse_from_rfc3339(s).unwrap();
        for style in [
            TimestampStyle::PgMicro,
            TimestampStyle::OffsetNoColon,
            TimestampStyle::NegativeOffset,
            TimestampStyle::Space,
            TimestampStyle::ZNanos,
        ] {
            let styled = style_timestamp(s, style).unwrap();
            // chrono reads these forms with an explicit pattern; the same millisecond.
            let text = styled.replacen(' ', "T", 1).replace('Z', "+00:00");
            let parsed = chrono::DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%#z")
                .unwrap_or_else(|e| panic!("{styled}: {e}"));
            assert_eq!(
                parsed.timestamp_millis(),
                base.timestamp_millis(),
                "{styled}"
            );
        }
        assert_eq!(
            style_timestamp(s, TimestampStyle::OffsetNoColon).unwrap(),
            "2025-03-01T10:00:00.120+0100"
        );
        let pg = style_timestamp(s, TimestampStyle::PgMicro).unwrap();
        assert!(
            pg.starts_with("2025-03-01T09:00:00.12") && pg.ends_with("+00:00"),
            "{pg}"
        );
        assert_eq!(style_timestamp(s, TimestampStyle::ZMillis), None);
    }
}
