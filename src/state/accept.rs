//! The one rule for whether an answer is acceptable for a question: chosen labels must be
//! options of the question, several only when it is `multiple`, and free text only when it
//! is `custom`.
//!
//! Every place that takes answers (answer files in `gaffer validate` and the snapshot,
//! `gaffer answer`, the Slack bot, the reconciler) asks [`Question::accepts`] and words the
//! [`Refusal`] its own way.

use std::fmt;

use crate::state::spec::Choice;
use crate::state::status::Question;

/// What someone answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// Option labels: one, or several for a `multiple` question.
    Choice(&'a [String]),
    /// Free text instead of an option.
    Text(&'a str),
}

impl<'a> From<&'a Choice> for Answer<'a> {
    fn from(choice: &'a Choice) -> Self {
        match choice {
            Choice::One(label) => Answer::Choice(std::slice::from_ref(label)),
            Choice::Many(labels) => Answer::Choice(labels),
        }
    }
}

/// Why an answer is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Several labels for a question that takes one; how many were given.
    TooMany(usize),
    /// A label that is not one of the question's options.
    NotAnOption(String),
    /// Free text for a question that takes only its options.
    NoFreeText,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooMany(n) => write!(f, "{n} choices given, but the question allows only one"),
            Refusal::NotAnOption(label) => write!(f, "{label:?} is not one of the options"),
            Refusal::NoFreeText => {
                f.write_str("the question takes one of its options, not free text")
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl Question {
    /// Whether `answer` is acceptable for this question; the first reason when not (see
    /// [`Question::refusals`] for all of them).
    ///
    /// # Errors
    ///
    /// When the answer chooses several labels for a question that takes one, a label that
    /// is not an option, or gives free text to a question that is not `custom`.
    pub fn accepts(&self, answer: &Answer<'_>) -> Result<(), Refusal> {
        match self.refusals(answer).into_iter().next() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Every reason `answer` is not acceptable for this question (none when it is): too
    /// many labels first, then each label that is not an option, in the order given.
    pub fn refusals(&self, answer: &Answer<'_>) -> Vec<Refusal> {
        let mut out = Vec::new();
        match *answer {
            Answer::Choice(labels) => {
                if labels.len() > 1 && !self.multiple {
                    out.push(Refusal::TooMany(labels.len()));
                }
                out.extend(
                    labels
                        .iter()
                        .filter(|l| !self.has_option(l))
                        .map(|l| Refusal::NotAnOption(l.clone())),
                );
            }
            Answer::Text(_) if self.custom => {}
            Answer::Text(_) => out.push(Refusal::NoFreeText),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(multiple: bool, custom: bool) -> Question {
        let yaml = format!(
            "text: Which algorithm?\n\
             options: [{{label: RS256 (Recommended)}}, {{label: HS256}}]\n\
             multiple: {multiple}\ncustom: {custom}\n\
             recommended: RS256 (Recommended)\naskedAt: 2026-01-01T00:00:00Z\nstate: open\n"
        );
        crate::state::yaml::parse(yaml.as_bytes()).unwrap()
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn a_choice_must_be_options_and_several_only_when_multiple() {
        let single = question(false, false);
        let one = labels(&["HS256"]);
        assert_eq!(single.accepts(&Answer::Choice(&one)), Ok(()));
        let two = labels(&["RS256 (Recommended)", "HS256"]);
        assert_eq!(
            single.accepts(&Answer::Choice(&two)),
            Err(Refusal::TooMany(2))
        );
        assert_eq!(question(true, false).accepts(&Answer::Choice(&two)), Ok(()));

        let bad = labels(&["ES256", "HS256", "hs256"]);
        assert_eq!(
            single.refusals(&Answer::Choice(&bad)),
            vec![
                Refusal::TooMany(3),
                Refusal::NotAnOption("ES256".into()),
                Refusal::NotAnOption("hs256".into()),
            ]
        );
        assert_eq!(
            question(true, true).accepts(&Answer::Choice(&bad)),
            Err(Refusal::NotAnOption("ES256".into())),
            "custom allows free text, not unknown labels as a choice"
        );
    }

    #[test]
    fn free_text_only_when_custom() {
        assert_eq!(
            question(false, false).accepts(&Answer::Text("use EdDSA")),
            Err(Refusal::NoFreeText)
        );
        assert_eq!(
            question(false, true).accepts(&Answer::Text("use EdDSA")),
            Ok(())
        );
    }

    #[test]
    fn answer_files_convert_and_refusals_read_well() {
        let many = Choice::Many(labels(&["HS256", "ES256"]));
        assert_eq!(
            question(false, false).refusals(&Answer::from(&many)),
            vec![Refusal::TooMany(2), Refusal::NotAnOption("ES256".into())]
        );
        let one = Choice::One("HS256".into());
        assert_eq!(question(false, false).accepts(&(&one).into()), Ok(()));
        assert_eq!(
            Refusal::NotAnOption("ES256".into()).to_string(),
            "\"ES256\" is not one of the options"
        );
        assert_eq!(
            Refusal::TooMany(2).to_string(),
            "2 choices given, but the question allows only one"
        );
    }
}
