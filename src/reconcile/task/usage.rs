//! Usage: what a task's model requests used, counted once each (they come with the
//! builder's events, past the same cursor) into the task's total and its days (in the
//! business time zone), so a project's or a day's spend is a sum over the state repository.

use jiff::Timestamp;

use super::{Plan, View};
use crate::state::status::Usage;

/// Adds what the builder's finished requests used.
pub fn record(view: &View, plan: &mut Plan, used: &[(Timestamp, Usage)]) {
    if used.is_empty() {
        return;
    }
    let tz = view
        .settings
        .business_hours
        .time_zone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    for (at, u) in used {
        plan.status.usage.get_or_insert_with(Usage::default).add(u);
        let day = at.to_zoned(tz.clone()).date().to_string();
        plan.status.usage_by_day.entry(day).or_default().add(u);
    }
}
