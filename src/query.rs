//! `lomi-sync query`: read-only SQL over the mirror, printed as an aligned table, CSV,
//! a JSON array or JSON lines. Write statements are refused before they run, and the
//! connection is opened read-only besides, so a query can never change the mirror.

use std::io::Write;

use rusqlite::types::ValueRef;
use serde_json::Value;

use crate::store::Store;

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
    /// The statement would write (SQLite says it is not read-only): refused before it runs.
    #[error(
        "`query` only reads: this statement would write to the mirror; the mirror is changed only by sync runs"
    )]
    Write,
    /// No statement given (blank, or only `;`).
    #[error(
        "the query is empty; pass one SQL statement, e.g. \"SELECT count(*) FROM live_customers\""
    )]
    Empty,
    /// Not built for PostgreSQL yet (issue 17 in progress).
    #[error("query is not built for PostgreSQL yet")]
    NotBuilt,
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Io(#[from] std::io::Error),
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
    let Some(sqlite) = store.sqlite() else {
        return Err(QueryError::NotBuilt);
    };
    let mut stmt = sqlite.conn().prepare(sql)?;
    if !stmt.readonly() {
        return Err(QueryError::Write);
    }
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let mut rows = stmt.query([])?;
    let mut count = 0u64;
    match format {
        Format::Table => {
            let mut cells: Vec<Vec<String>> = Vec::new();
            while let Some(row) = rows.next()? {
                cells.push(
                    (0..columns.len())
                        .map(|i| text(row.get_ref(i)))
                        .collect::<Result<_, _>>()?,
                );
            }
            count = cells.len() as u64;
            write_table(&columns, &cells, out)?;
        }
        Format::Csv => {
            writeln!(
                out,
                "{}",
                columns
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(",")
            )?;
            while let Some(row) = rows.next()? {
                let fields: Vec<String> = (0..columns.len())
                    .map(|i| text(row.get_ref(i)).map(|t| csv_field(&t)))
                    .collect::<Result<_, _>>()?;
                writeln!(out, "{}", fields.join(","))?;
                count += 1;
            }
        }
        Format::Json | Format::Jsonl => {
            if format == Format::Json {
                write!(out, "[")?;
            }
            while let Some(row) = rows.next()? {
                let mut obj = serde_json::Map::new();
                for (i, c) in columns.iter().enumerate() {
                    obj.insert(c.clone(), json(row.get_ref(i)?));
                }
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

fn text(v: rusqlite::Result<ValueRef<'_>>) -> rusqlite::Result<String> {
    Ok(match v? {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    })
}

fn json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
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
