//! `GET /healthz`: healthy while the last successful run is younger than
//! `server.healthy_within`, for load balancers and systemd watchers; otherwise a
//! one-line reason.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::HealthFacts;

/// `Ok` when healthy, else the reason, on one line (an error's line breaks are folded).
pub fn judge(facts: &HealthFacts, now: DateTime<Utc>, within: Duration) -> Result<(), String> {
    let failed = match &facts.last_run {
        Some((outcome, error)) if outcome == "failed" => Some(
            format!(
                "last run failed: {}",
                error.as_deref().unwrap_or("no error recorded")
            )
            .replace(['\n', '\r'], " "),
        ),
        _ => None,
    };
    let Some(at) = &facts.last_success_at else {
        return Err(match failed {
            Some(f) => format!("no successful run yet; {f}"),
            None => "no successful run yet".to_string(),
        });
    };
    let age = DateTime::parse_from_rfc3339(at)
        .ok()
        .and_then(|t| (now - t.with_timezone(&Utc)).to_std().ok())
        .unwrap_or_default();
    if age <= within {
        return Ok(());
    }
    let stale = format!(
        "last success at {at}, older than {}",
        humantime::format_duration(within)
    );
    Err(match failed {
        Some(f) => format!("{f}; {stale}"),
        None => stale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(success: Option<&str>, last: Option<(&str, Option<&str>)>) -> HealthFacts {
        HealthFacts {
            last_success_at: success.map(str::to_string),
            last_run: last.map(|(o, e)| (o.to_string(), e.map(str::to_string))),
        }
    }

    #[test]
    fn healthy_only_while_the_last_success_is_young() {
        let now: DateTime<Utc> = "2025-06-01T12:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        let recent = Some("2025-06-01T11:30:00.000000Z");
        let old = Some("2025-06-01T10:00:00.000000Z");
        assert_eq!(
            judge(&facts(recent, Some(("succeeded", None))), now, hour),
            Ok(())
        );
        // A failed run after a recent success: still healthy (the next tick retries).
        assert_eq!(
            judge(&facts(recent, Some(("failed", Some("x")))), now, hour),
            Ok(())
        );
        assert_eq!(
            judge(&facts(None, None), now, hour),
            Err("no successful run yet".into())
        );
        assert_eq!(
            judge(&facts(old, Some(("succeeded", None))), now, hour),
            Err("last success at 2025-06-01T10:00:00.000000Z, older than 1h".into())
        );
        assert_eq!(
            judge(&facts(old, Some(("failed", Some("boom\nagain")))), now, hour),
            Err("last run failed: boom again; last success at 2025-06-01T10:00:00.000000Z, older than 1h".into())
        );
        assert_eq!(
            judge(
                &facts(None, Some(("failed", Some("key rejected")))),
                now,
                hour
            ),
            Err("no successful run yet; last run failed: key rejected".into())
        );
    }
}
