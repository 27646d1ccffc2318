//! `lomi-sync query`: read-only SQL over the mirror, printed as an aligned table, CSV,
//! a JSON array or JSON lines, from either store. SQLite: write statements are refused
//! before they run, and the connection is opened read-only besides. PostgreSQL
//! (`PgStore::query_text`, `store/pg/query.rs`): one statement in a `READ ONLY`
//! transaction on a read-only session, so the server refuses a write; its values come
//! as text, timestamps in the mirror's form. Both become [`Cell`]s, and one writer
//! prints them, so the formats are the same for both stores.

use std::io::Write;

use rusqlite::types::ValueRef;
use serde_json::Value;

use crate::store::Store;
use crate::store::pg::{PgQueryError, TextKind, TextRows};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table with a header row.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON array of objects keyed by column name.
    Json,
    /// JSON lines: one object a row, keyed by column name.
    Jsonl,
}

/// Why `lomi-sync query` failed; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// SQLite refused or failed the statement.
    #[error("the query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed the statement: the server's message.
    #[error("the query failed: {0}")]
    Server(String),
    /// The statement would write (SQLite says it is not read-only, or PostgreSQL
    /// refused it in the read-only transaction): nothing was written.
    #[error(
        "`query` only reads: this statement would write to the mirror; the mirror is changed only by sync runs"
    )]
    Write,
    /// No statement given (blank, or only `;`).
    #[error(
        "the query is empty; pass one SQL statement, e.g. \"SELECT count(*) FROM live_customers\""
    )]
    Empty,
    /// The PostgreSQL connection failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Io(#[from] std::io::Error),
}

impl From<PgQueryError> for QueryError {
    fn from(e: PgQueryError) -> QueryError {
        match e {
            PgQueryError::Write => QueryError::Write,
            PgQueryError::Sql(text) => QueryError::Server(text),
            PgQueryError::Store(e) => QueryError::Store(e),
        }
    }
}

/// One value as printed: text in a table or CSV (NULL empty), typed in JSON.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// A number's exact digits (PostgreSQL's integers, `numeric`, floats): a JSON number
    /// with those digits, never rounded through `f64`.
    Digits(String),
    Bool(bool),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Integer(i) => i.to_string(),
            Cell::Real(f) => f.to_string(),
            Cell::Text(t) | Cell::Digits(t) => t.clone(),
            Cell::Bool(b) => b.to_string(),
        }
    }

    fn json(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Integer(i) => Value::from(i),
            Cell::Real(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Cell::Text(t) => Value::String(t),
            // `arbitrary_precision`: the number keeps its digits as text. `NaN` and
            // `Infinity` are no JSON numbers: strings.
            Cell::Digits(t) => match serde_json::from_str::<serde_json::Number>(&t) {
                Ok(n) => Value::Number(n),
                Err(_) => Value::String(t),
            },
            Cell::Bool(b) => Value::Bool(b),
        }
    }

    fn sqlite(v: ValueRef<'_>) -> Cell {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(f) => Cell::Real(f),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Cell::Text(b.iter().map(|x| format!("{x:02x}")).collect()),
        }
    }

    fn postgres(kind: TextKind, v: Option<String>) -> Cell {
        match (kind, v) {
            (_, None) => Cell::Null,
            (TextKind::Text, Some(t)) => Cell::Text(t),
            (TextKind::Number, Some(t)) => Cell::Digits(t),
            (TextKind::Bool, Some(t)) => Cell::Bool(t == "true"),
        }
    }
}

/// Runs `sql` and writes its rows to `out` in `format`. Returns the number of rows.
pub fn run(
    store: &Store,
    sql: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, QueryError> {
    if sql.trim().trim_end_matches(';').trim().is_empty() {
        return Err(QueryError::Empty);
    }
    match store {
        Store::Sqlite(s) => {
            let mut stmt = s.conn().prepare(sql)?;
            if !stmt.readonly() {
                return Err(QueryError::Write);
            }
            let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let n = columns.len();
            let mut rows = stmt.query([])?;
            let mut next = || -> Result<Option<Vec<Cell>>, QueryError> {
                let Some(row) = rows.next()? else {
                    return Ok(None);
                };
                let cells = (0..n).map(|i| row.get_ref(i).map(Cell::sqlite));
                Ok(Some(cells.collect::<Result<_, _>>()?))
            };
            write_rows(&columns, &mut next, format, out)
        }
        Store::Postgres(p) => {
            let TextRows {
                columns,
                kinds,
                rows,
            } = p.query_text(sql)?;
            let mut rows = rows.into_iter();
            let mut next = || -> Result<Option<Vec<Cell>>, QueryError> {
                Ok(rows.next().map(|row| {
                    let cells = kinds.iter().zip(row);
                    cells.map(|(k, v)| Cell::postgres(*k, v)).collect()
                }))
            };
            write_rows(&columns, &mut next, format, out)
        }
    }
}

/// The next row, `None` after the last.
type NextRow<'a> = dyn FnMut() -> Result<Option<Vec<Cell>>, QueryError> + 'a;

/// Writes the rows `next` gives in `format`; returns how many.
fn write_rows(
    columns: &[String],
    next: &mut NextRow<'_>,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, QueryError> {
    let mut count = 0u64;
    match format {
        Format::Table => {
            let mut cells: Vec<Vec<String>> = Vec::new();
            while let Some(row) = next()? {
                cells.push(row.iter().map(Cell::text).collect());
            }
            count = cells.len() as u64;
            write_table(columns, &cells, out)?;
        }
        Format::Csv => {
            let header: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
            writeln!(out, "{}", header.join(","))?;
            while let Some(row) = next()? {
                let fields: Vec<String> = row.iter().map(|c| csv_field(&c.text())).collect();
                writeln!(out, "{}", fields.join(","))?;
                count += 1;
            }
        }
        Format::Json | Format::Jsonl => {
            if format == Format::Json {
                write!(out, "[")?;
            }
            while let Some(row) = next()? {
                let obj: serde_json::Map<String, Value> = columns
                    .iter()
                    .cloned()
                    .zip(row.into_iter().map(Cell::json))
                    .collect();
                let line = Value::Object(obj).to_string();
                match format {
                    Format::Json if count > 0 => write!(out, ",\n{line}")?,
                    Format::Json => write!(out, "{line}")?,
                    _ => writeln!(out, "{line}")?,
                }
                count += 1;
            }
            if format == Format::Json {
                writeln!(out, "]")?;
            }
        }
    }
    out.flush()?;
    Ok(count)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_table(
    columns: &[String],
    rows: &[Vec<String>],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = columns.iter().map(|c| width(c)).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(width(cell).min(60));
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = if width(c) > 60 {
                    c.chars().take(59).chain(['…']).collect()
                } else {
                    c.clone()
                };
                format!("{c}{}", " ".repeat(widths[i].saturating_sub(width(&c))))
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(columns))?;
    writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    )?;
    for r in rows {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(
        out,
        "({} row{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn postgres_values_print_exactly_in_every_format() {
        let cells = vec![
            Cell::postgres(TextKind::Number, Some("12345678901234567890.10".into())),
            Cell::postgres(TextKind::Bool, Some("true".into())),
            Cell::postgres(TextKind::Text, Some("{\"a\": 1}".into())),
            Cell::postgres(TextKind::Number, None),
            Cell::postgres(TextKind::Number, Some("NaN".into())),
        ];
        let columns: Vec<String> = ["n", "b", "j", "z", "nan"].map(String::from).into();
        let mut rows = vec![cells].into_iter();
        let mut next = || Ok(rows.next());
        let mut out = Vec::new();
        write_rows(&columns, &mut next, Format::Jsonl, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"n\":12345678901234567890.10,\"b\":true,\"j\":\"{\\\"a\\\": 1}\",\"z\":null,\"nan\":\"NaN\"}\n"
        );
        let cell = Cell::postgres(TextKind::Bool, Some("false".into()));
        assert_eq!(cell.text(), "false");
        assert_eq!(Cell::Null.text(), "");
    }

    #[test]
    fn table_aligns_non_ascii() {
        let mut out = Vec::new();
        write_table(
            &["name".into(), "n".into()],
            &[
                vec!["Aïssatou".into(), "1".into()],
                vec!["Bo".into(), "22".into()],
            ],
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "name      n\n--------  --\nAïssatou  1\nBo        22\n(2 rows)\n"
        );
    }
}
