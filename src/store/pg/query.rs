//! `lomi-sync query` on PostgreSQL: one statement in a `READ ONLY` transaction, its
//! values as text. `query.rs` formats them, for either store.
//!
//! The statement is parsed first with the extended protocol (which refuses more than
//! one statement: `SELECT 1; DELETE ...` never runs) to learn its columns and their
//! types, then run with the simple protocol, where the server sends every value as
//! text (exact `numeric`, `jsonb` as JSON text). The transaction is `READ ONLY` (and the
//! session `default_transaction_read_only`), so a write is refused by the server
//! (SQLSTATE 25006), and it is rolled back whatever happens.
//!
//! Values are shown as the SQLite mirror shows its own: `timestamptz` in the mirror's
//! text form (`2025-01-02T03:04:05.123456Z`: UTC, microseconds, as `ts_text` gives it);
//! `boolean` as `true`/`false`; NULL empty (JSON `null`); `date` and other types as
//! PostgreSQL prints them under `DateStyle = ISO`.

use postgres::types::Type;
use postgres::{Client, SimpleQueryMessage};

use super::PgStore;
use crate::store::StoreError;

/// How a column's text reads in JSON output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// A string.
    Text,
    /// A number, written with its exact digits (integers, `numeric`, floats).
    Number,
    /// `true` or `false`.
    Bool,
}

/// A statement's result: column names, how each reads, and the rows' values as text
/// (`None` for NULL).
#[derive(Debug, Default)]
pub struct TextRows {
    /// The column names, in order.
    pub columns: Vec<String>,
    /// How each column's text reads, in order.
    pub kinds: Vec<TextKind>,
    /// The rows, each value as text.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Why a statement gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum PgQueryError {
    /// The server refused it in the read-only transaction: it would write.
    #[error("the statement would write")]
    Write,
    /// The server refused or failed it: its message (and hint).
    #[error("{0}")]
    Sql(String),
    /// The connection failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PgStore {
    /// Runs one statement read-only and returns its rows as text (see the module's doc).
    pub fn query_text(&self, sql: &str) -> Result<TextRows, PgQueryError> {
        self.with(|c| Ok::<_, StoreError>(read_only(c, sql)))?
    }
}

fn read_only(c: &mut Client, sql: &str) -> Result<TextRows, PgQueryError> {
    c.batch_execute(
        "BEGIN READ ONLY; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'",
    )
    .map_err(refusal)?;
    let result = rows(c, sql);
    // Best effort: a failed statement already aborted the transaction.
    let _ = c.batch_execute("ROLLBACK");
    result
}

fn rows(c: &mut Client, sql: &str) -> Result<TextRows, PgQueryError> {
    let stmt = c.prepare(sql).map_err(refusal)?;
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().into()).collect();
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let mut out = TextRows {
        columns,
        kinds: types.iter().map(kind_of).collect(),
        rows: Vec::new(),
    };
    for message in c.simple_query(sql).map_err(refusal)? {
        if let SimpleQueryMessage::Row(row) = message {
            out.rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(|v| shown(types.get(i), v)))
                    .collect(),
            );
        }
    }
    Ok(out)
}

fn kind_of(t: &Type) -> TextKind {
    match *t {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => TextKind::Number,
        Type::NUMERIC | Type::FLOAT4 | Type::FLOAT8 => TextKind::Number,
        Type::BOOL => TextKind::Bool,
        _ => TextKind::Text,
    }
}

/// A value's text as shown: booleans as words, `timestamptz` in the mirror's form.
fn shown(t: Option<&Type>, v: &str) -> String {
    match t {
        Some(&Type::BOOL) => if v == "t" { "true" } else { "false" }.into(),
        Some(&Type::TIMESTAMPTZ) => mirror_timestamp(v).unwrap_or_else(|| v.into()),
        _ => v.into(),
    }
}

/// PostgreSQL's ISO output of a `timestamptz` in UTC (`2025-01-02 03:04:05.12+00`,
/// trailing zeros of the fraction dropped) in the mirror's form
/// (`2025-01-02T03:04:05.120000Z`); `None` for anything else (`infinity`, BC dates,
/// years past 9999), which is shown as PostgreSQL prints it.
fn mirror_timestamp(v: &str) -> Option<String> {
    let v = v.strip_suffix("+00")?;
    let (date, time) = v.split_once(' ')?;
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let date_ok = date.len() == 10
        && date.split('-').map(str::len).eq([4, 2, 2])
        && date.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    let time_ok =
        hms.len() == 8 && hms.split(':').all(|p| digits(p, 2)) && hms.split(':').count() == 3;
    let fraction_ok = fraction.len() <= 6 && fraction.bytes().all(|b| b.is_ascii_digit());
    (date_ok && time_ok && fraction_ok).then(|| format!("{date}T{hms}.{fraction:0<6}Z"))
}

/// The server's refusal: a write in the read-only transaction is [`PgQueryError::Write`];
/// others keep the server's message and hint (the statement is the user's own text, so
/// quoting the server is the useful answer).
fn refusal(e: postgres::Error) -> PgQueryError {
    let Some(db) = e.as_db_error() else {
        return PgQueryError::Store(StoreError::Postgres(e));
    };
    if *db.code() == postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION {
        return PgQueryError::Write;
    }
    let mut text = db.message().to_string();
    if db.message().contains("multiple commands") {
        text.push_str("; pass one SQL statement");
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!(" (hint: {hint})"));
    }
    PgQueryError::Sql(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_the_mirror_writes_them() {
        let cases = [
            (
                "2025-01-02 03:04:05.123456+00",
                Some("2025-01-02T03:04:05.123456Z"),
            ),
            (
                "2025-01-02 03:04:05.12+00",
                Some("2025-01-02T03:04:05.120000Z"),
            ),
            (
                "2025-01-02 03:04:05+00",
                Some("2025-01-02T03:04:05.000000Z"),
            ),
            ("infinity", None),
            ("0044-03-15 12:00:00+00 BC", None),
            ("12025-01-02 03:04:05+00", None),
            ("2025-01-02 03:04:05+02", None),
        ];
        for (pg, mirror) in cases {
            assert_eq!(mirror_timestamp(pg).as_deref(), mirror, "{pg}");
        }
    }

    #[test]
    fn booleans_are_words_and_other_text_is_kept() {
        assert_eq!(shown(Some(&Type::BOOL), "t"), "true");
        assert_eq!(shown(Some(&Type::BOOL), "f"), "false");
        assert_eq!(shown(Some(&Type::NUMERIC), "12.50"), "12.50");
        assert_eq!(shown(Some(&Type::JSONB), "{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(kind_of(&Type::NUMERIC), TextKind::Number);
        assert_eq!(kind_of(&Type::JSONB), TextKind::Text);
        assert_eq!(kind_of(&Type::TIMESTAMPTZ), TextKind::Text);
    }
}
