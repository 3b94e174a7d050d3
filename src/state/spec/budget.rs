//! Budgets: how much a task (and, later, a project or everything per day) may spend, in
//! money or tokens. `budget:` in `gaffer.yaml`, overridable in `project.yaml` and `task.yaml`.
//!
//! ```yaml
//! budget: {task: "$5"}          # money, the provider's currency (USD for OpenCode's prices)
//! budget: {task: 2M tokens}     # or tokens: 500k, 2M, 1500000
//! ```

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::status::Usage;

/// An amount a budget allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Money: `$5`, `$0.50`.
    Money(f64),
    /// Tokens: `500k`, `2M tokens`, `1500000`.
    Tokens(u64),
}

impl Amount {
    /// Parses `$5`, `$0.50`, `500k`, `2M tokens`, `1500000`.
    pub fn parse(s: &str) -> Result<Amount, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "{s:?} is not a budget: write money as \"$5\" or \"$0.50\", tokens as 500k, \
                 2M tokens or 1500000"
            )
        };
        if let Some(m) = t.strip_prefix('$') {
            let v: f64 = m.trim().parse().map_err(|_| bad())?;
            return if v.is_finite() && v > 0.0 {
                Ok(Amount::Money(v))
            } else {
                Err(format!("{s:?}: a budget must be more than $0"))
            };
        }
        let t = t.strip_suffix("tokens").unwrap_or(t).trim();
        let (num, mult) = match t.chars().last() {
            Some('k' | 'K') => (&t[..t.len() - 1], 1_000.0),
            Some('M' | 'm') => (&t[..t.len() - 1], 1_000_000.0),
            _ => (t, 1.0),
        };
        let v: f64 = num.trim().parse().map_err(|_| bad())?;
        if !v.is_finite() || v <= 0.0 {
            return Err(format!("{s:?}: a budget must be more than 0 tokens"));
        }
        Ok(Amount::Tokens((v * mult).round() as u64))
    }

    /// How much of it `usage` spent, as a fraction (1.0 = all); `None` when it cannot be
    /// told: a money budget while some requests had no price.
    pub fn spent(&self, usage: &Usage) -> Option<f64> {
        match *self {
            Amount::Money(_) if usage.unpriced > 0 => None,
            Amount::Money(limit) => Some(usage.cost / limit),
            Amount::Tokens(limit) => Some(usage.tokens() as f64 / limit as f64),
        }
    }

    /// What `usage` spent, in this budget's unit.
    pub fn show_spent(&self, usage: &Usage) -> String {
        match self {
            Amount::Money(_) => usage.cost_text(),
            Amount::Tokens(_) => format!("{} tokens", usage.tokens()),
        }
    }

    /// This amount times `factor` (a raise).
    pub fn times(&self, factor: f64) -> Amount {
        match *self {
            Amount::Money(v) => Amount::Money((v * factor * 100.0).round() / 100.0),
            Amount::Tokens(n) => Amount::Tokens((n as f64 * factor).round() as u64),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Money(v) => write!(f, "${v:.2}"),
            Amount::Tokens(n) if n % 1_000_000 == 0 => write!(f, "{}M tokens", n / 1_000_000),
            Amount::Tokens(n) if n % 1_000 == 0 => write!(f, "{}k tokens", n / 1_000),
            Amount::Tokens(n) => write!(f, "{n} tokens"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n > 0 => Ok(Amount::Tokens(n as u64)),
            Raw::Int(n) => Err(serde::de::Error::custom(format!(
                "{n}: a budget must be more than 0 tokens"
            ))),
            Raw::Text(t) => Amount::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Money (\"$5\", \"$0.50\") or tokens (500k, \"2M tokens\", 1500000).",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*(\\$\\s*[0-9.]+|[0-9.]+\\s*[kKmM]?\\s*(tokens)?)\\s*$"},
                {"type": "integer", "minimum": 1}
            ]
        })
    }
}

/// `budget:` — what may be spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// One task, in all. At 80 % people are told; at 100 % the builder's turn is stopped and
    /// a person decides: raise it, or the task stops (Failed, `BudgetExceeded`) at the
    /// question deadline. Money is never spent by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Amount>,
    /// A project's tasks, per day (in the business time zone; `gaffer.yaml` or
    /// `project.yaml`). Once spent, its queued tasks wait for the next day or a raise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_per_day: Option<Amount>,
    /// Every task, per day (`gaffer.yaml`). Once spent, queued tasks wait for the next day or
    /// a raise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<Amount>,
    /// In `task.yaml`: who set this budget, when a bot commits it for them (a Slack user
    /// id). A raise counts only from someone allowed to decide, like an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl BudgetSpec {
    /// The task budget in force: the task's, else the project's, else `gaffer.yaml`'s.
    pub fn task_limit(
        task: Option<&BudgetSpec>,
        project: Option<&BudgetSpec>,
        settings: &BudgetSpec,
    ) -> Option<Amount> {
        task.and_then(|b| b.task)
            .or_else(|| project.and_then(|b| b.task))
            .or(settings.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_in_money_or_tokens_and_bad_ones_say_why() {
        assert_eq!(Amount::parse("$5"), Ok(Amount::Money(5.0)));
        assert_eq!(Amount::parse(" $0.50 "), Ok(Amount::Money(0.5)));
        assert_eq!(Amount::parse("500k"), Ok(Amount::Tokens(500_000)));
        assert_eq!(Amount::parse("2M tokens"), Ok(Amount::Tokens(2_000_000)));
        assert_eq!(Amount::parse("1500000"), Ok(Amount::Tokens(1_500_000)));
        for bad in ["$-5", "-3", "$0", "five dollars", "$", "1e400", "k"] {
            assert!(Amount::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Amount::Money(5.0).to_string(), "$5.00");
        assert_eq!(Amount::Tokens(2_000_000).to_string(), "2M tokens");
        let b: BudgetSpec = crate::state::yaml::parse(b"task: 300000\n").unwrap();
        assert_eq!(b.task, Some(Amount::Tokens(300_000)));
        let e = crate::state::yaml::parse::<BudgetSpec>(b"task: -5\n").unwrap_err();
        assert!(e.to_string().contains("more than 0"), "{e}");
        let e = crate::state::yaml::parse::<BudgetSpec>(b"task: \"$lots\"\n").unwrap_err();
        assert!(e.to_string().contains("is not a budget"), "{e}");
    }

    #[test]
    fn spending_is_a_fraction_and_unknown_without_a_price() {
        let u = Usage {
            requests: 2,
            input: 800,
            output: 200,
            cost: 4.0,
            ..Usage::default()
        };
        assert_eq!(Amount::Money(5.0).spent(&u), Some(0.8));
        assert_eq!(Amount::Tokens(2000).spent(&u), Some(0.5));
        let unpriced = Usage {
            unpriced: 1,
            ..u.clone()
        };
        assert_eq!(Amount::Money(5.0).spent(&unpriced), None);
        assert_eq!(Amount::Tokens(2000).spent(&unpriced), Some(0.5));
        assert_eq!(Amount::Money(5.0).times(1.5), Amount::Money(7.5));
    }
}
