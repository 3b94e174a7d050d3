//! `gaffer usage [--since 7d] [--by task|project|day] [--output json]`: what the builders'
//! model requests used — tokens and cost — from the state repository alone (each task's
//! `status.yaml` `usageByDay`, days in the business time zone), with totals and a per-day
//! bar chart.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::{CliError, CmdResult};
use crate::state::snapshot::Snapshot;
use crate::state::status::Usage;

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// One row per task.
    Task,
    /// One row per project.
    Project,
    /// One row per day.
    Day,
}

/// Arguments of `gaffer usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Only days from this long ago (in days: `7d`, `30d`; `0d` is today), in the business
    /// time zone.
    #[arg(long, default_value = "7d", value_parser = parse_days)]
    pub since: u32,
    /// Group by task, project or day.
    #[arg(long, value_enum, default_value_t = By::Project)]
    pub by: By,
    /// Output format.
    #[arg(long, value_enum, default_value_t = super::validate::Output::Text)]
    pub output: super::validate::Output,
    /// The state repository (local path or URL).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
}

fn parse_days(s: &str) -> Result<u32, String> {
    s.strip_suffix('d')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n <= 3650)
        .ok_or_else(|| format!("{s:?} is not a number of days like 7d (at most 3650d)"))
}

/// Sums the usage of every task per `by` key over the days from `first` on.
pub fn table(snap: &Snapshot, by: By, first: jiff::civil::Date) -> BTreeMap<String, Usage> {
    let mut rows: BTreeMap<String, Usage> = BTreeMap::new();
    for (t, e) in snap.tasks() {
        let Some(status) = e.status.as_deref() else {
            continue;
        };
        for (day, u) in &status.usage_by_day {
            let Ok(d) = day.parse::<jiff::civil::Date>() else {
                continue;
            };
            if d < first {
                continue;
            }
            let key = match by {
                By::Task => t.to_string(),
                By::Project => t.project.to_string(),
                By::Day => day.clone(),
            };
            rows.entry(key).or_default().add(u);
        }
    }
    rows
}

/// The text table, totals last, then a bar per day.
pub fn render(rows: &BTreeMap<String, Usage>, days: &BTreeMap<String, Usage>, by: By) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no usage recorded in this period\n");
        return out;
    }
    let head = match by {
        By::Task => "TASK",
        By::Project => "PROJECT",
        By::Day => "DAY",
    };
    let w = rows
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(5)
        .max(head.len())
        .max(5);
    let _ = writeln!(
        out,
        "{head:<w$}  {:>8}  {:>10}  {:>10}  {:>10}  COST",
        "REQUESTS", "INPUT", "OUTPUT", "CACHED"
    );
    let mut total = Usage::default();
    for (k, u) in rows {
        total.add(u);
        let _ = writeln!(
            out,
            "{k:<w$}  {:>8}  {:>10}  {:>10}  {:>10}  {}",
            u.requests,
            u.input,
            u.output,
            u.cache_read,
            u.cost_text()
        );
    }
    let _ = writeln!(
        out,
        "{:<w$}  {:>8}  {:>10}  {:>10}  {:>10}  {}",
        "TOTAL",
        total.requests,
        total.input,
        total.output,
        total.cache_read,
        total.cost_text()
    );
    // Tokens per day, as bars scaled to the busiest day.
    let max = days.values().map(Usage::tokens).max().unwrap_or(0).max(1);
    let _ = writeln!(out, "\ntokens per day");
    for (day, u) in days {
        let n = ((u.tokens() as f64 / max as f64) * 40.0).round() as usize;
        let _ = writeln!(
            out,
            "{day}  {:<40}  {}",
            "█".repeat(n.max(usize::from(u.tokens() > 0))),
            u.summary()
        );
    }
    out
}

/// Runs `gaffer usage`.
pub fn cmd_usage(args: UsageArgs) -> CmdResult {
    let (snapshot, _tmp) = super::status::open_snapshot(&args.state, &args.branch)?;
    let tz = snapshot
        .settings
        .as_ref()
        .and_then(|s| s.business_hours.time_zone().ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let today = jiff::Timestamp::now().to_zoned(tz).date();
    let first = today
        .checked_sub(jiff::Span::new().days(i64::from(args.since)))
        .map_err(|e| CliError::user(e.to_string()))?;
    let rows = table(&snapshot, args.by, first);
    let days = table(&snapshot, By::Day, first);
    if matches!(args.output, super::validate::Output::Json) {
        let mut total = Usage::default();
        rows.values().for_each(|u| total.add(u));
        let doc = serde_json::json!({
            "since": first.to_string(),
            "by": format!("{:?}", args.by).to_lowercase(),
            "rows": rows,
            "total": total,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| CliError::internal(e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("usage since {first} (business time zone)\n");
    print!("{}", render(&rows, &days, args.by));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_sums_by_key_and_the_bars_scale_to_the_busiest_day() {
        let u = |tokens: u64, cost: f64, unpriced: u64| Usage {
            requests: 2,
            input: tokens,
            cost,
            unpriced,
            ..Usage::default()
        };
        let rows = BTreeMap::from([
            ("ai-dev/api".to_string(), u(1000, 0.5, 0)),
            ("ai-dev/web".to_string(), u(3000, 0.0, 2)),
        ]);
        let days = BTreeMap::from([
            ("2026-11-29".to_string(), u(1000, 0.5, 0)),
            ("2026-11-30".to_string(), u(3000, 0.0, 2)),
        ]);
        let text = render(&rows, &days, By::Project);
        insta::assert_snapshot!(text);
        assert!(text.contains("TOTAL"));
        assert!(text.contains("$0.5000 + unknown"), "{text}");
        assert!(
            text.contains("ai-dev/web") && text.contains("unknown"),
            "{text}"
        );
        assert_eq!(parse_days("7d"), Ok(7));
        assert!(parse_days("-1d").is_err() && parse_days("week").is_err());
    }
}
