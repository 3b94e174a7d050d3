//! Business hours arithmetic.
//!
//! When a builder asks the developer a question, the question's deadline is
//! not counted in wall-clock time: a question asked late on a Friday with a
//! two hour timeout should not expire over the weekend. Deadlines are counted
//! in *business hours* of the developer's time zone: only time inside the
//! daily opening window, on working days that are not holidays, counts.
//!
//! This module holds the configuration types ([`BusinessHours`], [`Weekday`],
//! [`ClockTime`], [`HumanDuration`]), the arithmetic itself ([`deadline`]) and
//! an injectable [`Clock`] so that tests can control "now".

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many consecutive calendar days without any business time
/// [`deadline`] tolerates before it gives up (about ten years).
pub const MAX_IDLE_DAYS: u32 = 3660;

/// The regular expression a [`ClockTime`] string must match.
const CLOCK_TIME_PATTERN: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";

/// The regular expression a [`HumanDuration`] string must match.
const HUMAN_DURATION_PATTERN: &str = "^([0-9]+[dhms])+$";

/// The accepted form of a [`HumanDuration`], quoted in error messages.
const HUMAN_DURATION_FORM: &str = "one or more <number><unit> groups with units d, h, m or s, \
     such as \"2h\", \"90m\", \"1h30m\", \"45s\" or \"14d\"";

/// When the developer is available: the time zone, the working days, the
/// daily opening window and the holidays.
///
/// Every field has a default, so a partial map (or an empty one) is accepted;
/// unknown fields are rejected. Call [`BusinessHours::validate`] after
/// deserializing to check the time zone and the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// IANA time zone name in which the hours below are read, e.g.
    /// `Europe/London`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The working days of the week.
    #[serde(default = "default_days")]
    pub days: Vec<Weekday>,
    /// Local time of day at which business hours start (inclusive).
    #[serde(default = "default_start")]
    pub start: ClockTime,
    /// Local time of day at which business hours end (exclusive).
    #[serde(default = "default_end")]
    pub end: ClockTime,
    /// Dates (`YYYY-MM-DD`, in the time zone above) that are not working
    /// days even if they fall on one of `days`.
    #[serde(default)]
    #[schemars(schema_with = "holidays_schema")]
    pub holidays: Vec<Date>,
}

/// Serde default for [`BusinessHours::timezone`].
fn default_timezone() -> String {
    "Europe/London".to_owned()
}

/// Serde default for [`BusinessHours::days`].
fn default_days() -> Vec<Weekday> {
    vec![
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ]
}

/// Serde default for [`BusinessHours::start`].
fn default_start() -> ClockTime {
    ClockTime(Time::constant(9, 0, 0, 0))
}

/// Serde default for [`BusinessHours::end`].
fn default_end() -> ClockTime {
    ClockTime(Time::constant(17, 0, 0, 0))
}

/// JSON schema of [`BusinessHours::holidays`]: jiff's `Date` has no
/// `JsonSchema` impl, and it is written as a `YYYY-MM-DD` string.
fn holidays_schema(_generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "string",
            "format": "date",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
        }
    })
}

impl Default for BusinessHours {
    /// Europe/London, Monday to Friday, 09:00 to 17:00, no holidays.
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
            days: default_days(),
            start: default_start(),
            end: default_end(),
            holidays: Vec::new(),
        }
    }
}

impl BusinessHours {
    /// Checks that the time zone is a known IANA zone, that there is at
    /// least one working day and that `start` is before `end`.
    pub fn validate(&self) -> Result<(), HoursError> {
        self.checked_time_zone().map(|_| ())
    }

    /// Looks up [`BusinessHours::timezone`] in the time zone database.
    ///
    /// This only checks the time zone; see [`BusinessHours::validate`] for
    /// the full check.
    pub fn time_zone(&self) -> Result<TimeZone, HoursError> {
        TimeZone::get(&self.timezone).map_err(|source| HoursError::UnknownTimeZone {
            name: self.timezone.clone(),
            source,
        })
    }

    /// Whether `date` is a working day: one of [`BusinessHours::days`] and
    /// not one of [`BusinessHours::holidays`].
    pub fn is_business_day(&self, date: Date) -> bool {
        self.days
            .iter()
            .any(|day| jiff::civil::Weekday::from(*day) == date.weekday())
            && !self.holidays.contains(&date)
    }

    /// Validates everything and returns the resolved time zone.
    fn checked_time_zone(&self) -> Result<TimeZone, HoursError> {
        let tz = self.time_zone()?;
        if self.days.is_empty() {
            return Err(HoursError::NoWorkingDays);
        }
        if self.start >= self.end {
            return Err(HoursError::EmptyWindow {
                start: self.start,
                end: self.end,
            });
        }
        Ok(tz)
    }
}

/// A day of the week, written in lowercase as `mon` to `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl JsonSchema for Weekday {
    fn schema_name() -> Cow<'static, str> {
        "Weekday".into()
    }

    /// A plain string enum (the derive would make a `oneOf` out of the
    /// variants' doc comments).
    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "description": "A day of the week."
        })
    }
}

impl From<Weekday> for jiff::civil::Weekday {
    fn from(day: Weekday) -> Self {
        match day {
            Weekday::Mon => Self::Monday,
            Weekday::Tue => Self::Tuesday,
            Weekday::Wed => Self::Wednesday,
            Weekday::Thu => Self::Thursday,
            Weekday::Fri => Self::Friday,
            Weekday::Sat => Self::Saturday,
            Weekday::Sun => Self::Sunday,
        }
    }
}

impl From<jiff::civil::Weekday> for Weekday {
    fn from(day: jiff::civil::Weekday) -> Self {
        match day {
            jiff::civil::Weekday::Monday => Self::Mon,
            jiff::civil::Weekday::Tuesday => Self::Tue,
            jiff::civil::Weekday::Wednesday => Self::Wed,
            jiff::civil::Weekday::Thursday => Self::Thu,
            jiff::civil::Weekday::Friday => Self::Fri,
            jiff::civil::Weekday::Saturday => Self::Sat,
            jiff::civil::Weekday::Sunday => Self::Sun,
        }
    }
}

/// A time of day with minute precision, written as `"HH:MM"` (24 hour
/// clock, `00:00` to `23:59`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime(Time);

impl ClockTime {
    /// The time `hour:minute`; fails unless `0 <= hour < 24` and
    /// `0 <= minute < 60`.
    pub fn new(hour: i8, minute: i8) -> Result<Self, HoursError> {
        Time::new(hour, minute, 0, 0)
            .map(Self)
            .map_err(|_| HoursError::InvalidClockTime(format!("{hour:02}:{minute:02}")))
    }

    /// The time of day as a jiff civil time (seconds are always zero).
    pub fn time(self) -> Time {
        self.0
    }

    /// The hour, `0..=23`.
    pub fn hour(self) -> i8 {
        self.0.hour()
    }

    /// The minute, `0..=59`.
    pub fn minute(self) -> i8 {
        self.0.minute()
    }
}

impl From<ClockTime> for Time {
    fn from(clock: ClockTime) -> Self {
        clock.0
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

impl FromStr for ClockTime {
    type Err = HoursError;

    /// Parses exactly `HH:MM`.
    fn from_str(s: &str) -> Result<Self, HoursError> {
        let bad = || HoursError::InvalidClockTime(s.to_owned());
        let b = s.as_bytes();
        let two_digits = |hi: u8, lo: u8| -> Option<i8> {
            (hi.is_ascii_digit() && lo.is_ascii_digit())
                .then(|| ((hi - b'0') * 10 + (lo - b'0')) as i8)
        };
        let [h1, h2, b':', m1, m2] = *b else {
            return Err(bad());
        };
        let hour = two_digits(h1, h2).ok_or_else(bad)?;
        let minute = two_digits(m1, m2).ok_or_else(bad)?;
        Time::new(hour, minute, 0, 0).map(Self).map_err(|_| bad())
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Visitor accepting only strings.
        struct ClockTimeVisitor;

        impl Visitor<'_> for ClockTimeVisitor {
            type Value = ClockTime;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time of day \"HH:MM\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClockTime, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(ClockTimeVisitor)
    }
}

impl JsonSchema for ClockTime {
    fn schema_name() -> Cow<'static, str> {
        "ClockTime".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": CLOCK_TIME_PATTERN,
            "description": "A time of day, \"HH:MM\" on a 24 hour clock."
        })
    }
}

/// A positive duration written compactly, like `2h`, `90m`, `1h30m`, `45s`
/// or `14d`.
///
/// The form is one or more `<digits><unit>` groups without spaces, with
/// units `d` (24 hours), `h`, `m` and `s`; the groups are added up and the
/// total must be greater than zero. It is written back in canonical form,
/// largest unit first (`5400s` becomes `1h30m`, `48h` becomes `2d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub(crate) SignedDuration);

impl HumanDuration {
    /// Wraps `duration`, which must be positive and a whole number of
    /// seconds.
    pub fn new(duration: SignedDuration) -> Result<Self, HoursError> {
        let reason = if duration.is_negative() || duration.is_zero() {
            "it must be greater than zero"
        } else if duration.subsec_nanos() != 0 {
            "it must be a whole number of seconds"
        } else {
            return Ok(Self(duration));
        };
        Err(HoursError::InvalidDuration {
            input: signed(&duration),
            reason,
        })
    }

    /// The duration as a jiff signed duration (always positive).
    pub fn get(self) -> SignedDuration {
        self.0
    }
}

impl From<HumanDuration> for SignedDuration {
    fn from(duration: HumanDuration) -> Self {
        duration.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            let count = secs / size;
            if count != 0 {
                write!(f, "{count}{unit}")?;
            }
            secs %= size;
        }
        Ok(())
    }
}

impl FromStr for HumanDuration {
    type Err = HoursError;

    fn from_str(s: &str) -> Result<Self, HoursError> {
        let bad = |reason: &'static str| HoursError::InvalidDuration {
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let bytes = s.as_bytes();
        let mut total: i64 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let digits_start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits_start {
                return Err(bad("each group must start with a number"));
            }
            let size: i64 = match bytes.get(i) {
                None => return Err(bad("the last number has no unit")),
                Some(b'd') => 86_400,
                Some(b'h') => 3_600,
                Some(b'm') => 60,
                Some(b's') => 1,
                Some(_) => return Err(bad("units must be d, h, m or s")),
            };
            let too_large = || bad("it is too large");
            let count: i64 = s[digits_start..i].parse().map_err(|_| too_large())?;
            total = count
                .checked_mul(size)
                .and_then(|secs| total.checked_add(secs))
                .ok_or_else(too_large)?;
            i += 1;
        }
        if total == 0 {
            return Err(bad("it must be greater than zero"));
        }
        Ok(Self(SignedDuration::from_secs(total)))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Visitor accepting only strings.
        struct HumanDurationVisitor;

        impl Visitor<'_> for HumanDurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration string: {HUMAN_DURATION_FORM}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(HumanDurationVisitor)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": HUMAN_DURATION_PATTERN,
            "description": "A positive duration: one or more <number><unit> groups with units d (24 hours), h, m or s, e.g. \"2h\", \"90m\", \"1h30m\", \"14d\"."
        })
    }
}

/// Errors from business hours configuration and arithmetic.
#[derive(Debug, thiserror::Error)]
pub enum HoursError {
    /// The time zone name is not in the time zone database.
    #[error("unknown time zone {name:?} (expected an IANA name such as \"Europe/London\")")]
    UnknownTimeZone {
        /// The name as configured.
        name: String,
        /// Why jiff rejected it.
        #[source]
        source: jiff::Error,
    },
    /// `days` is empty.
    #[error("business hours have no working days")]
    NoWorkingDays,
    /// `start` is not before `end`.
    #[error("business hours start {start} must be before end {end}")]
    EmptyWindow {
        /// The configured start.
        start: ClockTime,
        /// The configured end.
        end: ClockTime,
    },
    /// A string is not a valid [`ClockTime`].
    #[error("expected a time of day \"HH:MM\", got {0:?}")]
    InvalidClockTime(String),
    /// A string is not a valid [`HumanDuration`].
    #[error("invalid duration {input:?}: {reason}; expected {HUMAN_DURATION_FORM}")]
    InvalidDuration {
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`deadline`] was given a negative duration.
    #[error("business time duration must not be negative, got {}", signed(.0))]
    NegativeDuration(SignedDuration),
    /// [`deadline`] found no business time for [`MAX_IDLE_DAYS`] days.
    #[error("no business time in the {days} days from {from}")]
    NoBusinessTime {
        /// The first day without business time.
        from: Date,
        /// How many days were searched.
        days: u32,
    },
    /// The deadline would fall outside the range of dates jiff supports.
    #[error("deadline falls outside the supported range of dates")]
    OutOfRange,
}

/// Formats `duration` like `-2h` (jiff's `{:#}` would say `2h ago`).
fn signed(duration: &SignedDuration) -> String {
    jiff::fmt::friendly::SpanPrinter::new()
        .direction(jiff::fmt::friendly::Direction::Sign)
        .duration_to_string(duration)
}

/// The instant at which `duration` of business time has elapsed since
/// `start`.
///
/// Only time inside each working day's window `[hours.start, hours.end)`,
/// on days in `hours.days` that are not holidays, counts, all read in
/// `hours.timezone`. A `start` outside business hours begins counting at the
/// next opening; a zero `duration` returns that next business instant (or
/// `start` itself when it is inside business hours).
///
/// Each day's window is the real time between its opening and closing
/// instants, so a daylight saving change inside a window shortens or
/// lengthens it. Local times that fall in a gap or a fold are resolved the
/// way jiff does by default ("compatible": a time in a gap is moved forward
/// by the gap's length, a time in a fold takes the earlier instant).
///
/// Fails if `hours` is invalid (see [`BusinessHours::validate`]), if
/// `duration` is negative, if no business time is found in
/// [`MAX_IDLE_DAYS`] consecutive days, or if the result is out of range.
pub fn deadline(
    start: Timestamp,
    duration: SignedDuration,
    hours: &BusinessHours,
) -> Result<Timestamp, HoursError> {
    let tz = hours.checked_time_zone()?;
    if duration.is_negative() {
        return Err(HoursError::NegativeDuration(duration));
    }
    let open = hours.start.time();
    let close = hours.end.time();
    let mut remaining = duration;
    let mut date = tz.to_datetime(start).date();
    let mut idle_since = date;
    let mut idle_days: u32 = 0;
    loop {
        if hours.is_business_day(date) {
            let local = |time: Time| {
                tz.to_timestamp(date.to_datetime(time))
                    .map_err(|_| HoursError::OutOfRange)
            };
            let window_start = local(open)?.max(start);
            let window_end = local(close)?;
            if window_start < window_end {
                let available = window_end.duration_since(window_start);
                if remaining <= available {
                    return window_start
                        .checked_add(remaining)
                        .map_err(|_| HoursError::OutOfRange);
                }
                remaining -= available;
                idle_days = 0;
                date = date.tomorrow().map_err(|_| HoursError::OutOfRange)?;
                idle_since = date;
                continue;
            }
        }
        idle_days += 1;
        if idle_days >= MAX_IDLE_DAYS {
            return Err(HoursError::NoBusinessTime {
                from: idle_since,
                days: idle_days,
            });
        }
        date = date.tomorrow().map_err(|_| HoursError::OutOfRange)?;
    }
}

/// A source of the current instant, injected so that tests can control
/// time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The real system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock read from a file holding an RFC 3339 instant (`gaffer reconcile --clock-file`),
/// so a test can move a reconciler *process* through business hours; without a readable
/// instant in the file it is the system clock.
#[derive(Debug, Clone)]
pub struct FileClock {
    path: std::path::PathBuf,
}

impl FileClock {
    /// A clock reading `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl Clock for FileClock {
    fn now(&self) -> Timestamp {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(Timestamp::now)
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    /// The instant [`Clock::now`] returns.
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock to `now` (backwards is allowed).
    pub fn set(&self, now: Timestamp) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the clock by `by` (which may be negative).
    ///
    /// # Panics
    ///
    /// If the result is outside the range of instants jiff supports.
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now
            .checked_add(by)
            .expect("manual clock advanced out of range");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
