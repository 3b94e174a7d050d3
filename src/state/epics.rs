//! BMAD's epics file (`epics.md`, written by `bmad-create-epics-and-stories`): its stories,
//! each of which becomes a child task when a `full` plan is approved.
//!
//! ```markdown
//! ## Epic 1: Sign-in
//! ### Story 1.1: Issue tokens
//! As a user, I want …, so that …
//! **Acceptance criteria:** Given … When … Then …
//! ### Story 1.2: Verify tokens
//! ```
//!
//! The file is written by a model and may be edited by people, so it is read strictly and a
//! mistake is reported where it is (`path:line:col`), never guessed around.

use std::collections::BTreeSet;

/// One story: its number, title and whole text (heading included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    /// `N` of `Story N.M`.
    pub epic: u32,
    /// `M` of `Story N.M`.
    pub number: u32,
    /// The heading's title.
    pub title: String,
    /// The story's section, from its heading to the next heading of level 1–3.
    pub text: String,
}

impl Story {
    /// `N.M`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.epic, self.number)
    }
}

/// A located problem in the epics file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpicsError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Most stories a plan may turn into tasks.
pub const MAX_STORIES: usize = 50;

/// The stories of `text`, in file order.
pub fn parse(text: &str) -> Result<Vec<Story>, EpicsError> {
    let err = |line: usize, column: usize, message: String| EpicsError {
        line,
        column,
        message,
    };
    let mut stories: Vec<Story> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut epic: Option<u32> = None;
    let mut open: Option<Story> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let level = raw.chars().take_while(|c| *c == '#').count();
        let heading = (1..=3).contains(&level) && raw[level..].starts_with(' ');
        if heading && let Some(s) = open.take() {
            stories.push(s);
        }
        if !heading {
            if let Some(s) = open.as_mut() {
                s.text.push('\n');
                s.text.push_str(raw);
            }
            continue;
        }
        let rest = raw[level..].trim();
        if level == 2
            && let Some(after) = rest.strip_prefix("Epic ")
        {
            let (n, _) = number_then_title(after)
                .ok_or_else(|| err(line, level + 7, "expected `## Epic N: title`".into()))?;
            epic = Some(n);
            continue;
        }
        if level == 3
            && let Some(after) = rest.strip_prefix("Story ")
        {
            let col = level + 8;
            let (key, title) = after
                .split_once([':', ' '])
                .map_or((after, ""), |(k, t)| (k, t));
            // Digits only: `+2` and the like are not story numbers.
            let num = |d: &str| {
                (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| d.parse::<u32>().ok())
                    .flatten()
            };
            let (e, m) = key
                .split_once('.')
                .and_then(|(e, m)| Some((num(e)?, num(m)?)))
                .ok_or_else(|| {
                    err(
                        line,
                        col,
                        format!("expected `### Story N.M: title`, found {key:?}"),
                    )
                })?;
            let title = title.trim().trim_start_matches([':', '-', '–']).trim();
            if title.is_empty() {
                return Err(err(line, col, format!("story {e}.{m} has no title")));
            }
            if let Some(n) = epic
                && n != e
            {
                return Err(err(
                    line,
                    col,
                    format!("story {e}.{m} is under epic {n}: it should be numbered {n}.M"),
                ));
            }
            if !seen.insert((e, m)) {
                return Err(err(line, col, format!("story {e}.{m} appears twice")));
            }
            if seen.len() > MAX_STORIES {
                return Err(err(line, 1, format!("more than {MAX_STORIES} stories")));
            }
            open = Some(Story {
                epic: e,
                number: m,
                title: title.to_string(),
                text: raw.to_string(),
            });
        }
    }
    if let Some(s) = open.take() {
        stories.push(s);
    }
    if stories.is_empty() {
        return Err(err(
            1,
            1,
            "no `### Story N.M: title` heading: no story to build".into(),
        ));
    }
    for s in &mut stories {
        s.text = s.text.trim_end().to_string() + "\n";
    }
    Ok(stories)
}

/// `N: title` (or `N - title`, `N title`) → `(N, title)`.
fn number_then_title(s: &str) -> Option<(u32, &str)> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let n = digits.parse().ok()?;
    Some((
        n,
        s[digits.len()..]
            .trim_start_matches([':', ' ', '-', '–'])
            .trim(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPICS: &str = "# Epics\n\n## Epic 1: Sign-in\n\n### Story 1.1: Issue tokens\n\nAs a user, I want a token.\n\n**Acceptance criteria**\n- Given a login, then a token.\n\n### Story 1.2: Verify tokens\nAs a service, I want to check.\n\n## Epic 2: Admin\n### Story 2.1 - Revoke\nAs an admin.\n";

    #[test]
    fn stories_are_read_in_file_order_with_their_text() {
        let s = parse(EPICS).unwrap();
        let keys: Vec<_> = s.iter().map(|s| (s.key(), s.title.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("1.1".to_string(), "Issue tokens"),
                ("1.2".to_string(), "Verify tokens"),
                ("2.1".to_string(), "Revoke")
            ]
        );
        assert_eq!(
            s[0].text,
            "### Story 1.1: Issue tokens\n\nAs a user, I want a token.\n\n**Acceptance criteria**\n- Given a login, then a token.\n"
        );
        assert_eq!(s[2].text, "### Story 2.1 - Revoke\nAs an admin.\n");
    }

    #[test]
    fn mistakes_are_located() {
        let cases = [
            (
                "## Epic 1: A\n### Story 1.x: T\n",
                2,
                "expected `### Story N.M: title`",
            ),
            ("## Epic 1: A\n### Story 1.1:\n", 2, "has no title"),
            (
                "## Epic 2: A\n### Story 1.1: T\n",
                2,
                "should be numbered 2.M",
            ),
            ("### Story 1.1: T\n### Story 1.1: U\n", 2, "appears twice"),
            (
                "# Epics\nnothing here\n",
                1,
                "no `### Story N.M: title` heading",
            ),
            ("## Epic one\n", 1, "expected `## Epic N: title`"),
            ("###  Story 0.+2 :T\n", 1, "expected `### Story N.M: title`"),
        ];
        for (text, line, msg) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.message.contains(msg), "{text:?}: {e:?}");
        }
    }
}
