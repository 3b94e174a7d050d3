use super::*;

/// Which business hours a table case uses.
#[derive(Debug, Clone, Copy)]
enum Hours {
    /// The default: Europe/London, mon..fri, 09:00-17:00.
    Office,
    /// Office hours with 2026-12-25 and 2026-12-28 as holidays.
    Christmas,
    /// Europe/London, every day, 00:00-06:00 (contains the DST changes).
    Night,
    /// Europe/London, every day, 01:30-03:00 (opens inside the March
    /// gap and inside the October fold).
    Gap,
}

impl Hours {
    fn get(self) -> BusinessHours {
        let every_day = vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ];
        match self {
            Hours::Office => BusinessHours::default(),
            Hours::Christmas => BusinessHours {
                holidays: vec![
                    jiff::civil::date(2026, 12, 25),
                    jiff::civil::date(2026, 12, 28),
                ],
                ..BusinessHours::default()
            },
            Hours::Night => BusinessHours {
                days: every_day,
                start: ClockTime::new(0, 0).expect("valid time"),
                end: ClockTime::new(6, 0).expect("valid time"),
                ..BusinessHours::default()
            },
            Hours::Gap => BusinessHours {
                days: every_day,
                start: ClockTime::new(1, 30).expect("valid time"),
                end: ClockTime::new(3, 0).expect("valid time"),
                ..BusinessHours::default()
            },
        }
    }
}

/// One row of the deadline table.
struct Case {
    name: &'static str,
    hours: Hours,
    /// RFC 3339 / RFC 9557 instant.
    start: &'static str,
    /// A [`HumanDuration`] string, or "0s" for zero.
    duration: &'static str,
    /// The expected deadline, zoned in Europe/London.
    expected: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "inside hours, same day",
        hours: Hours::Office,
        start: "2026-11-25T10:00:00+00:00[Europe/London]", // Wednesday
        duration: "2h",
        expected: "2026-11-25T12:00:00+00:00[Europe/London]",
    },
    Case {
        name: "ends exactly at closing",
        hours: Hours::Office,
        start: "2026-11-25T15:00:00Z",
        duration: "2h",
        expected: "2026-11-25T17:00:00+00:00[Europe/London]",
    },
    Case {
        name: "friday 16:30 plus 2h is monday 10:30",
        hours: Hours::Office,
        start: "2026-11-27T16:30:00+00:00[Europe/London]",
        duration: "2h",
        expected: "2026-11-30T10:30:00+00:00[Europe/London]",
    },
    Case {
        name: "start before opening",
        hours: Hours::Office,
        start: "2026-11-25T07:15:00Z",
        duration: "90m",
        expected: "2026-11-25T10:30:00+00:00[Europe/London]",
    },
    Case {
        name: "start after closing",
        hours: Hours::Office,
        start: "2026-11-25T18:00:00Z",
        duration: "1h30m",
        expected: "2026-11-26T10:30:00+00:00[Europe/London]",
    },
    Case {
        name: "start just before midnight after closing",
        hours: Hours::Office,
        start: "2026-11-25T23:59:59Z",
        duration: "1h",
        expected: "2026-11-26T10:00:00+00:00[Europe/London]",
    },
    Case {
        name: "start on saturday",
        hours: Hours::Office,
        start: "2026-11-28T12:00:00Z",
        duration: "45s",
        expected: "2026-11-30T09:00:45+00:00[Europe/London]",
    },
    Case {
        name: "across christmas holidays",
        hours: Hours::Christmas,
        start: "2026-12-24T16:00:00Z", // Thursday
        duration: "2h",
        expected: "2026-12-29T10:00:00+00:00[Europe/London]",
    },
    Case {
        name: "start on a holiday",
        hours: Hours::Christmas,
        start: "2026-12-25T10:00:00Z",
        duration: "30m",
        expected: "2026-12-29T09:30:00+00:00[Europe/London]",
    },
    Case {
        name: "multi-day 20h",
        hours: Hours::Office,
        start: "2026-11-23T09:00:00Z", // Monday
        duration: "20h",
        expected: "2026-11-25T13:00:00+00:00[Europe/London]",
    },
    Case {
        name: "14d is 42 business days of 8h",
        hours: Hours::Office,
        start: "2026-11-02T09:00:00Z", // Monday
        duration: "14d",
        expected: "2026-12-29T17:00:00+00:00[Europe/London]",
    },
    Case {
        name: "across the march 2027 change to bst",
        hours: Hours::Office,
        start: "2027-03-26T16:00:00+00:00[Europe/London]", // Friday
        duration: "2h",
        expected: "2027-03-29T10:00:00+01:00[Europe/London]",
    },
    Case {
        name: "across the october 2026 change to gmt",
        hours: Hours::Office,
        start: "2026-10-23T16:00:00+01:00[Europe/London]", // Friday
        duration: "2h",
        expected: "2026-10-26T10:00:00+00:00[Europe/London]",
    },
    Case {
        name: "march 2027 window 00:00-06:00 is 5 real hours (inside)",
        hours: Hours::Night,
        start: "2027-03-28T00:00:00Z",
        duration: "4h",
        expected: "2027-03-28T05:00:00+01:00[Europe/London]",
    },
    Case {
        name: "march 2027 window 00:00-06:00 is 5 real hours (all of it)",
        hours: Hours::Night,
        start: "2027-03-28T00:00:00Z",
        duration: "5h",
        expected: "2027-03-28T06:00:00+01:00[Europe/London]",
    },
    Case {
        name: "march 2027 window 00:00-06:00 is 5 real hours (spills over)",
        hours: Hours::Night,
        start: "2027-03-28T00:00:00Z",
        duration: "6h",
        expected: "2027-03-29T01:00:00+01:00[Europe/London]",
    },
    Case {
        name: "october 2026 window 00:00-06:00 is 7 real hours",
        hours: Hours::Night,
        start: "2026-10-25T00:00:00+01:00[Europe/London]",
        duration: "7h",
        expected: "2026-10-25T06:00:00+00:00[Europe/London]",
    },
    Case {
        name: "october 2026 window counts the repeated hour",
        hours: Hours::Night,
        start: "2026-10-25T00:00:00+01:00[Europe/London]",
        duration: "2h30m",
        expected: "2026-10-25T01:30:00+00:00[Europe/London]",
    },
    Case {
        name: "window opening in the march gap opens at 02:30 bst",
        hours: Hours::Gap,
        start: "2027-03-28T00:00:00Z",
        duration: "40m",
        expected: "2027-03-29T01:40:00+01:00[Europe/London]",
    },
    Case {
        name: "window opening in the october fold opens at the first 01:30",
        hours: Hours::Gap,
        start: "2026-10-25T00:00:00Z", // 01:00 BST
        duration: "1h",
        expected: "2026-10-25T01:30:00+00:00[Europe/London]",
    },
    Case {
        name: "zero duration inside hours is start",
        hours: Hours::Office,
        start: "2026-11-25T11:22:33.5Z",
        duration: "0s",
        expected: "2026-11-25T11:22:33.5+00:00[Europe/London]",
    },
    Case {
        name: "zero duration at friday closing is monday opening",
        hours: Hours::Office,
        start: "2026-11-27T17:00:00Z",
        duration: "0s",
        expected: "2026-11-30T09:00:00+00:00[Europe/London]",
    },
];

#[test]
fn deadline_table() {
    let mut failures = Vec::new();
    for case in CASES {
        let start: Timestamp = case.start.parse().expect(case.start);
        let duration = if case.duration == "0s" {
            SignedDuration::ZERO
        } else {
            case.duration
                .parse::<HumanDuration>()
                .expect(case.duration)
                .get()
        };
        let got = deadline(start, duration, &case.hours.get())
            .expect(case.name)
            .in_tz("Europe/London")
            .expect("known zone")
            .to_string();
        if got != case.expected {
            failures.push(format!(
                "{}: expected {}, got {got}",
                case.name, case.expected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deadline_in_other_time_zone() {
    let hours = BusinessHours {
        timezone: "America/New_York".to_owned(),
        ..BusinessHours::default()
    };
    // Friday 2026-11-27 16:30 in New York is 21:30Z.
    let start: Timestamp = "2026-11-27T21:30:00Z".parse().expect("timestamp");
    let got = deadline(start, SignedDuration::from_hours(2), &hours).expect("deadline");
    assert_eq!(got.to_string(), "2026-11-30T15:30:00Z");
}

#[test]
fn deadline_rejects_negative_duration() {
    let start: Timestamp = "2026-11-25T10:00:00Z".parse().expect("timestamp");
    let err = deadline(
        start,
        SignedDuration::from_hours(-2),
        &BusinessHours::default(),
    )
    .expect_err("negative");
    assert_eq!(
        err.to_string(),
        "business time duration must not be negative, got -2h"
    );
}

#[test]
fn deadline_gives_up_without_business_time() {
    // Every working day is a holiday for the next 3660 days.
    let first = jiff::civil::date(2026, 11, 30); // Monday
    let hours = BusinessHours {
        days: vec![Weekday::Mon],
        holidays: (0..600)
            .map(|week| {
                first
                    .checked_add(SignedDuration::from_hours(24 * 7 * week))
                    .expect("date")
            })
            .collect(),
        ..BusinessHours::default()
    };
    let start: Timestamp = "2026-11-27T10:00:00Z".parse().expect("timestamp");
    let err = deadline(start, SignedDuration::from_hours(1), &hours).expect_err("no time");
    assert_eq!(
        err.to_string(),
        "no business time in the 3660 days from 2026-11-27"
    );
}

#[test]
fn deadline_validates_hours() {
    let start: Timestamp = "2026-11-25T10:00:00Z".parse().expect("timestamp");
    let hours = BusinessHours {
        days: Vec::new(),
        ..BusinessHours::default()
    };
    let err = deadline(start, SignedDuration::from_hours(1), &hours).expect_err("no days");
    assert!(matches!(err, HoursError::NoWorkingDays), "{err:?}");
}

#[test]
fn validate_accepts_default() {
    BusinessHours::default()
        .validate()
        .expect("default is valid");
}

#[test]
fn validate_rejects_unknown_time_zone() {
    let hours = BusinessHours {
        timezone: "Europe/Atlantis".to_owned(),
        ..BusinessHours::default()
    };
    let err = hours.validate().expect_err("unknown zone");
    assert_eq!(
        err.to_string(),
        "unknown time zone \"Europe/Atlantis\" (expected an IANA name such as \"Europe/London\")"
    );
}

#[test]
fn validate_rejects_start_not_before_end() {
    for (start, end) in [((17, 0), (9, 0)), ((9, 0), (9, 0))] {
        let hours = BusinessHours {
            start: ClockTime::new(start.0, start.1).expect("time"),
            end: ClockTime::new(end.0, end.1).expect("time"),
            ..BusinessHours::default()
        };
        let err = hours.validate().expect_err("empty window");
        let expected = format!(
            "business hours start {:02}:{:02} must be before end {:02}:{:02}",
            start.0, start.1, end.0, end.1
        );
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn validate_rejects_no_days() {
    let hours = BusinessHours {
        days: Vec::new(),
        ..BusinessHours::default()
    };
    let err = hours.validate().expect_err("no days");
    assert_eq!(err.to_string(), "business hours have no working days");
}

#[test]
fn human_duration_round_trips() {
    let cases = [
        ("2h", "2h", 7_200),
        ("90m", "1h30m", 5_400),
        ("1h30m", "1h30m", 5_400),
        ("5400s", "1h30m", 5_400),
        ("45s", "45s", 45),
        ("14d", "14d", 14 * 86_400),
        ("48h", "2d", 2 * 86_400),
        ("1d1h1m1s", "1d1h1m1s", 90_061),
        ("30m1h", "1h30m", 5_400),
        ("0h5m", "5m", 300),
        ("007m", "7m", 420),
    ];
    for (input, canonical, secs) in cases {
        let parsed: HumanDuration = input.parse().expect(input);
        assert_eq!(parsed.get(), SignedDuration::from_secs(secs), "{input}");
        assert_eq!(parsed.to_string(), canonical, "{input}");
        let again: HumanDuration = canonical.parse().expect(canonical);
        assert_eq!(again, parsed, "{input}");
    }
}

#[test]
fn human_duration_errors() {
    let form = "one or more <number><unit> groups with units d, h, m or s, \
                    such as \"2h\", \"90m\", \"1h30m\", \"45s\" or \"14d\"";
    let cases = [
        ("", "it is empty"),
        ("2", "the last number has no unit"),
        ("1h30", "the last number has no unit"),
        ("h", "each group must start with a number"),
        ("-2h", "each group must start with a number"),
        ("2 h", "units must be d, h, m or s"),
        (" 2h", "each group must start with a number"),
        ("2w", "units must be d, h, m or s"),
        ("1.5h", "units must be d, h, m or s"),
        ("2H", "units must be d, h, m or s"),
        ("2hé", "each group must start with a number"),
        ("0h", "it must be greater than zero"),
        ("0d0s", "it must be greater than zero"),
        ("99999999999999999999s", "it is too large"),
        ("9999999999999999d", "it is too large"),
    ];
    for (input, reason) in cases {
        let err = input.parse::<HumanDuration>().expect_err(input);
        assert_eq!(
            err.to_string(),
            format!("invalid duration {input:?}: {reason}; expected {form}"),
        );
    }
}

#[test]
fn human_duration_new() {
    let ok = HumanDuration::new(SignedDuration::from_mins(90)).expect("positive");
    assert_eq!(ok.to_string(), "1h30m");
    let err = HumanDuration::new(SignedDuration::ZERO).expect_err("zero");
    assert!(
        err.to_string()
            .starts_with("invalid duration \"0s\": it must be greater than zero;"),
        "{err}"
    );
    let err = HumanDuration::new(SignedDuration::from_hours(-2)).expect_err("negative");
    assert!(
        err.to_string()
            .starts_with("invalid duration \"-2h\": it must be greater than zero;"),
        "{err}"
    );
    let err = HumanDuration::new(SignedDuration::from_millis(1500)).expect_err("subsec");
    assert!(
        err.to_string()
            .starts_with("invalid duration \"1s 500ms\": it must be a whole number"),
        "{err}"
    );
}

#[test]
fn human_duration_serde() {
    let d: HumanDuration = serde_json::from_str("\"1h30m\"").expect("json");
    assert_eq!(d.get(), SignedDuration::from_secs(5_400));
    assert_eq!(serde_json::to_string(&d).expect("json"), "\"1h30m\"");
    let err = serde_json::from_str::<HumanDuration>("90").expect_err("number");
    assert!(
        err.to_string()
            .starts_with("invalid type: integer `90`, expected a duration string"),
        "{err}"
    );
    let err = serde_json::from_str::<HumanDuration>("\"2 hours\"").expect_err("bad");
    assert!(
        err.to_string()
            .starts_with("invalid duration \"2 hours\": units must be d, h, m or s;"),
        "{err}"
    );
}

#[test]
fn clock_time_parse_and_display() {
    for (input, h, m) in [("00:00", 0, 0), ("09:05", 9, 5), ("23:59", 23, 59)] {
        let t: ClockTime = input.parse().expect(input);
        assert_eq!((t.hour(), t.minute()), (h, m));
        assert_eq!(t.to_string(), input);
    }
}

#[test]
fn clock_time_errors() {
    for input in [
        "9am",
        "9:00",
        "09:0",
        "24:00",
        "23:60",
        "09:00:00",
        "",
        " 9:00",
        "0900",
        "09-00",
        "-1:00",
        "+9:00",
        "٠٩:٠٠",
    ] {
        let err = input.parse::<ClockTime>().expect_err(input);
        assert_eq!(
            err.to_string(),
            format!("expected a time of day \"HH:MM\", got {input:?}")
        );
    }
    assert_eq!(
        "9am".parse::<ClockTime>().expect_err("9am").to_string(),
        r#"expected a time of day "HH:MM", got "9am""#
    );
    assert!(ClockTime::new(24, 0).is_err());
    assert!(ClockTime::new(-1, 0).is_err());
}

#[test]
fn clock_time_serde() {
    let t: ClockTime = serde_json::from_str("\"08:30\"").expect("json");
    assert_eq!(serde_json::to_string(&t).expect("json"), "\"08:30\"");
    let err = serde_json::from_str::<ClockTime>("\"9am\"").expect_err("9am");
    assert!(
        err.to_string()
            .starts_with(r#"expected a time of day "HH:MM", got "9am""#),
        "{err}"
    );
    let err = serde_json::from_str::<ClockTime>("900").expect_err("number");
    assert!(
        err.to_string()
            .starts_with(r#"invalid type: integer `900`, expected a time of day "HH:MM""#),
        "{err}"
    );
}

#[test]
fn business_hours_yaml() {
    let yaml = "timezone: America/New_York\n\
                    days: [mon, wed]\n\
                    start: 08:30\n\
                    end: \"16:00\"\n\
                    holidays: [\"2026-12-25\", 2027-01-01]\n";
    let hours: BusinessHours = serde_saphyr::from_str(yaml).expect("yaml");
    assert_eq!(
        hours,
        BusinessHours {
            timezone: "America/New_York".to_owned(),
            days: vec![Weekday::Mon, Weekday::Wed],
            start: ClockTime::new(8, 30).expect("time"),
            end: ClockTime::new(16, 0).expect("time"),
            holidays: vec![
                jiff::civil::date(2026, 12, 25),
                jiff::civil::date(2027, 1, 1)
            ],
        }
    );
    hours.validate().expect("valid");
}

#[test]
fn business_hours_partial_and_empty_maps_use_defaults() {
    let hours: BusinessHours = serde_saphyr::from_str("end: \"18:00\"\n").expect("yaml");
    assert_eq!(
        hours,
        BusinessHours {
            end: ClockTime::new(18, 0).expect("time"),
            ..BusinessHours::default()
        }
    );
    let hours: BusinessHours = serde_json::from_str("{}").expect("json");
    assert_eq!(hours, BusinessHours::default());
}

#[test]
fn business_hours_rejects_unknown_fields_and_bad_values() {
    let err = serde_json::from_str::<BusinessHours>(r#"{"timezone":"UTC","lunch":"12:00"}"#)
        .expect_err("unknown field");
    assert!(err.to_string().contains("unknown field `lunch`"), "{err}");
    let err = serde_json::from_str::<BusinessHours>(r#"{"start":"9am"}"#).expect_err("9am");
    assert!(
        err.to_string()
            .contains(r#"expected a time of day "HH:MM", got "9am""#),
        "{err}"
    );
    let err = serde_json::from_str::<BusinessHours>(r#"{"days":["monday"]}"#).expect_err("monday");
    assert!(
        err.to_string().contains("unknown variant `monday`"),
        "{err}"
    );
}

#[test]
fn business_hours_serializes_as_strings() {
    let hours = Hours::Christmas.get();
    let json = serde_json::to_value(&hours).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "timezone": "Europe/London",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "09:00",
            "end": "17:00",
            "holidays": ["2026-12-25", "2026-12-28"],
        })
    );
    let back: BusinessHours = serde_json::from_value(json).expect("json");
    assert_eq!(back, hours);
}

#[test]
fn json_schema_describes_strings() {
    let schema = serde_json::to_value(schemars::schema_for!(BusinessHours)).expect("json");
    let defs = &schema["$defs"];
    assert_eq!(defs["ClockTime"]["pattern"], CLOCK_TIME_PATTERN);
    let all = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    assert_eq!(
        defs["Weekday"]["enum"],
        serde_json::to_value(all).expect("json")
    );
    assert_eq!(
        defs["Weekday"]["enum"],
        serde_json::json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    );
    let props = &schema["properties"];
    assert_eq!(props["holidays"]["items"]["format"], "date");
    assert_eq!(props["start"]["default"], "09:00");
    assert_eq!(schema["additionalProperties"], false);
    let duration = serde_json::to_value(schemars::schema_for!(HumanDuration)).expect("json");
    assert_eq!(duration["pattern"], HUMAN_DURATION_PATTERN);
    assert_eq!(duration["type"], "string");
}

#[test]
fn weekday_converts_to_jiff() {
    let all = [
        (Weekday::Mon, jiff::civil::Weekday::Monday),
        (Weekday::Tue, jiff::civil::Weekday::Tuesday),
        (Weekday::Wed, jiff::civil::Weekday::Wednesday),
        (Weekday::Thu, jiff::civil::Weekday::Thursday),
        (Weekday::Fri, jiff::civil::Weekday::Friday),
        (Weekday::Sat, jiff::civil::Weekday::Saturday),
        (Weekday::Sun, jiff::civil::Weekday::Sunday),
    ];
    for (ours, theirs) in all {
        assert_eq!(jiff::civil::Weekday::from(ours), theirs);
        assert_eq!(Weekday::from(theirs), ours);
    }
    // The dates the deadline table relies on.
    assert_eq!(
        jiff::civil::date(2026, 11, 27).weekday(),
        jiff::civil::Weekday::Friday
    );
    assert_eq!(
        jiff::civil::date(2027, 3, 26).weekday(),
        jiff::civil::Weekday::Friday
    );
    assert_eq!(
        jiff::civil::date(2026, 10, 23).weekday(),
        jiff::civil::Weekday::Friday
    );
}

#[test]
fn manual_clock_moves_only_when_told() {
    let t0: Timestamp = "2026-11-27T16:30:00Z".parse().expect("timestamp");
    let clock = ManualClock::new(t0);
    assert_eq!(clock.now(), t0);
    clock.advance(SignedDuration::from_mins(90));
    assert_eq!(clock.now().to_string(), "2026-11-27T18:00:00Z");
    clock.set(t0);
    assert_eq!(clock.now(), t0);
    let dyn_clock: &dyn Clock = &clock;
    assert_eq!(dyn_clock.now(), t0);
}

#[test]
fn system_clock_is_recent() {
    let now = SystemClock.now();
    let floor: Timestamp = "2024-01-01T00:00:00Z".parse().expect("timestamp");
    assert!(now > floor, "{now}");
}
