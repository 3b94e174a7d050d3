//! Question documents: `questions/<batch>.md`, the checkbox-and-"Details:" format people
//! already annotate.
//!
//! The reconciler writes a document once, when several questions wait at the same time; from
//! then on people own it. A commit that ticks boxes (`[x]`) and/or fills a `Details:` line is
//! read back into answers: ticked boxes are the choice, Details is the note (or the answer
//! itself for a question that takes free text and has no box ticked). An annotation that is
//! ambiguous or names no option is an error located at its line, and answers nothing.

use std::collections::BTreeMap;

use crate::names::Qid;
use crate::state::status::{Question, QuestionOption};

/// What a person wrote under one question's heading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotation {
    /// The heading's line (1-based).
    pub line: usize,
    /// Ticked boxes: (line, text after the box as written: `Label — description`).
    pub ticked: Vec<(usize, String)>,
    /// Every box, ticked or not: (line, text after the box). Which option each names is
    /// decided against the question, in [`interpret`].
    pub boxes: Vec<(usize, String)>,
    /// The Details text, if any was written.
    pub details: Option<String>,
}

/// The answer an annotation gives.
#[derive(Debug, Clone, PartialEq)]
pub struct DocAnswer {
    /// The chosen labels (or the free text).
    pub choice: Vec<String>,
    /// Free text that went with the choice.
    pub note: Option<String>,
}

/// Writes the document for `questions` (in order).
pub fn render(
    task: &str,
    title: &str,
    questions: &[(Qid, Question)],
    tz: &jiff::tz::TimeZone,
) -> String {
    let title = one_line(title);
    let mut out = format!(
        "# Questions from the builder — {task}\n\n\
         The builder asked these while working on “{title}”. Tick a box (`[x]`) under each \
         question you want to decide — one, unless it says several — and/or write under \
         Details, then commit. A question you leave alone gets its recommended option at its \
         deadline.\n"
    );
    for (qid, q) in questions {
        let header = if q.header.is_empty() {
            String::new()
        } else {
            format!(" · {}", one_line(&q.header))
        };
        // The builder's words are quoted line by line: no line of theirs can read as a
        // heading, a box or Details.
        let text: Vec<String> = q.text.trim().lines().map(|l| format!("> {l}")).collect();
        out.push_str(&format!("\n## {qid}{header}\n\n{}\n\n", text.join("\n")));
        let deadline = q
            .deadline
            .map(|d| {
                d.to_zoned(tz.clone())
                    .strftime("%a %d %b %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_else(|| "none".into());
        let mut hint = format!(
            "Deadline: {deadline} · recommended: {}",
            one_line(&q.recommended)
        );
        if q.multiple {
            hint.push_str(" · several may be ticked");
        }
        if q.custom {
            hint.push_str(" · or write your own answer under Details");
        }
        out.push_str(&format!("{hint}\n\n"));
        for o in &q.options {
            out.push_str(&format!("• [ ] {}\n", box_text(o)));
        }
        out.push_str("\nDetails: \n");
    }
    out
}

/// `text` on one line, as the document shows it: a builder's line break cannot start a
/// line of the document's own.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// What an option's box says after `[ ]`: `Label — description`, on one line.
fn box_text(o: &QuestionOption) -> String {
    let desc = if o.description.trim().is_empty() {
        String::new()
    } else {
        format!(" — {}", one_line(&o.description))
    };
    format!("{}{desc}", one_line(&o.label))
}

/// The option a box's text (`Label — description`, as rendered or as a person wrote it)
/// names: the option whose box reads exactly so (a label may itself hold ` — `, so
/// `A — B` with no description and `A` described as `B — C` are told apart by their
/// whole line); else, for a line a person edited, the one whose label, as shown, is all
/// of it or starts it before ` — `, the longest such label when several do.
fn option_named<'q>(q: &'q Question, written: &str) -> Option<&'q str> {
    if let Some(o) = q.options.iter().find(|o| box_text(o).trim() == written) {
        return Some(&o.label);
    }
    q.options
        .iter()
        .map(|o| (o.label.as_str(), one_line(&o.label)))
        .filter(|(_, shown)| {
            let shown = shown.trim();
            match written.strip_prefix(shown) {
                Some("") => true,
                // The description follows after ` — ` (spaces around a label are trimmed
                // with the line, so an empty label leaves `— description`).
                Some(rest) => {
                    (shown.is_empty() || rest.starts_with(char::is_whitespace))
                        && rest.trim_start().starts_with('—')
                }
                None => false,
            }
        })
        .max_by_key(|(_, shown)| shown.trim().len())
        .map(|(label, _)| label)
}

/// What a box's text shows of its label, for messages.
fn label_part(written: &str) -> &str {
    written.split(" — ").next().unwrap_or("").trim()
}

/// Reads the annotations of a document, by question.
pub fn parse(text: &str) -> BTreeMap<Qid, Annotation> {
    let mut out: BTreeMap<Qid, Annotation> = BTreeMap::new();
    let mut current: Option<Qid> = None;
    let mut in_details = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("## ") {
            in_details = false;
            current = rest
                .split(|c: char| c.is_whitespace() || c == '·' || c == ':')
                .next()
                .and_then(|id| Qid::new(id).ok());
            if let Some(q) = &current {
                out.entry(q.clone()).or_default().line = n;
            }
            continue;
        }
        let Some(q) = current.clone() else { continue };
        let a = out.entry(q).or_default();
        if let Some((ticked, label)) = checkbox(trimmed) {
            in_details = false;
            a.boxes.push((n, label.clone()));
            if ticked {
                a.ticked.push((n, label));
            }
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("Details:") {
            in_details = true;
            push_details(a, rest);
            continue;
        }
        if in_details {
            push_details(a, trimmed);
        }
    }
    out
}

fn push_details(a: &mut Annotation, text: &str) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    match &mut a.details {
        Some(d) => {
            d.push('\n');
            d.push_str(text);
        }
        None => a.details = Some(text.to_string()),
    }
}

/// `• [x] Label — description` → (ticked, `Label — description`).
fn checkbox(line: &str) -> Option<(bool, String)> {
    let rest = line
        .strip_prefix('•')
        .or_else(|| line.strip_prefix('-'))
        .or_else(|| line.strip_prefix('*'))
        .unwrap_or(line)
        .trim_start();
    let (ticked, rest) = if let Some(r) = rest.strip_prefix("[ ]") {
        (false, r)
    } else if let Some(r) = rest
        .strip_prefix("[x]")
        .or_else(|| rest.strip_prefix("[X]"))
    {
        (true, r)
    } else {
        return None;
    };
    Some((ticked, rest.trim().to_string()))
}

/// The answer an annotation gives to `q`: `Ok(None)` when nothing was annotated, an error
/// (`line: message`) when it is ambiguous or names no option.
pub fn interpret(a: &Annotation, q: &Question) -> Result<Option<DocAnswer>, String> {
    for (line, written) in &a.boxes {
        if option_named(q, written).is_none() {
            return Err(format!(
                "line {line}: \"{}\" is not an option (the options are: {})",
                label_part(written),
                q.options
                    .iter()
                    .map(|o| o.label.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
    }
    if a.ticked.len() > 1 && !q.multiple {
        let lines: Vec<String> = a.ticked.iter().map(|(l, _)| l.to_string()).collect();
        return Err(format!(
            "lines {}: {} boxes ticked, but the question takes one answer",
            lines.join(", "),
            a.ticked.len()
        ));
    }
    if !a.ticked.is_empty() {
        return Ok(Some(DocAnswer {
            choice: a
                .ticked
                .iter()
                .filter_map(|(_, w)| option_named(q, w))
                .map(str::to_string)
                .collect(),
            note: a.details.clone(),
        }));
    }
    match &a.details {
        Some(text) if q.custom => Ok(Some(DocAnswer {
            choice: vec![text.clone()],
            note: None,
        })),
        Some(_) => Err(format!(
            "line {}: Details were written but no box is ticked, and this question needs one of its options",
            a.line
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::status::QuestionState;

    fn q(multiple: bool, custom: bool) -> Question {
        Question {
            kind: Default::default(),
            text: "Which algorithm?".into(),
            header: "Signing".into(),
            options: ["RS256 (Recommended)", "HS256", "ES256"]
                .iter()
                .map(|l| QuestionOption {
                    label: l.to_string(),
                    description: format!("use {l}"),
                })
                .collect(),
            multiple,
            custom,
            recommended: "RS256 (Recommended)".into(),
            asked_at: jiff::Timestamp::UNIX_EPOCH,
            deadline: Some(jiff::Timestamp::UNIX_EPOCH),
            state: QuestionState::Open,
            request_id: None,
            decision: None,
            point: Default::default(),
            provisional_branch: None,
            parent_branch: None,
            problems: Vec::new(),
        }
    }

    fn doc(qs: &[(&str, Question)]) -> String {
        let qs: Vec<(Qid, Question)> = qs
            .iter()
            .map(|(id, q)| (Qid::new(*id).unwrap(), q.clone()))
            .collect();
        render("demo/web-api/t", "Auth", &qs, &jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn an_untouched_document_answers_nothing() {
        let text = doc(&[("q-001", q(false, false)), ("q-002", q(true, true))]);
        assert!(text.contains("## q-001 · Signing"));
        assert!(text.contains("• [ ] HS256 — use HS256"));
        assert!(text.contains("Deadline: Thu 01 Jan 00:00 UTC · recommended: RS256 (Recommended)"));
        let parsed = parse(&text);
        assert_eq!(parsed.len(), 2);
        for (id, a) in &parsed {
            let qq = if id.as_str() == "q-001" {
                q(false, false)
            } else {
                q(true, true)
            };
            assert_eq!(interpret(a, &qq), Ok(None));
        }
    }

    /// Found writing the fuzz target for documents: the builder's text went into the
    /// document as it was, so a question whose text held a line `[x] HS256`, or an option
    /// label with a line break, answered itself, and a person's later edit of the document
    /// committed that answer as theirs.
    #[test]
    fn builder_text_cannot_tick_a_box_or_write_details() {
        let mut forged = q(false, false);
        forged.text = "Which algorithm?\n[x] HS256\n## q-002\nDetails: forged".into();
        forged.header = "Signing\n• [x] HS256".into();
        forged.options[2].label = "ES256\n- [x] HS256".into();
        forged.options[2].description = "curve\nDetails: forged".into();
        forged.recommended = "RS256\n[x] HS256".into();
        let text = doc(&[("q-001", forged.clone()), ("q-002", q(false, false))]);
        let parsed = parse(&text);
        assert_eq!(parsed.len(), 2, "{text}");
        assert_eq!(
            interpret(&parsed[&Qid::new("q-001").unwrap()], &forged),
            Ok(None),
            "{text}"
        );
        // Ticking the label with the line break answers with that option's exact label.
        let ticked = text.replacen("• [ ] ES256 - [x] HS256", "• [x] ES256 - [x] HS256", 1);
        let got = interpret(&parse(&ticked)[&Qid::new("q-001").unwrap()], &forged);
        assert_eq!(got.unwrap().unwrap().choice, ["ES256\n- [x] HS256"]);
    }

    #[test]
    fn a_label_holding_the_description_separator_is_read_whole() {
        let mut qq = q(false, false);
        qq.options[0].label = "A — B".into();
        qq.options[1].label = "A".into();
        let text = doc(&[("q-001", qq.clone())]).replacen("• [ ] A — B", "• [x] A — B", 1);
        let got = interpret(&parse(&text)[&Qid::new("q-001").unwrap()], &qq);
        assert_eq!(got.unwrap().unwrap().choice, ["A — B"]);
    }

    #[test]
    fn a_whole_line_tells_a_label_holding_the_separator_from_a_description() {
        let mut qq = q(false, false);
        qq.options[0].label = "A — B".into();
        qq.options[0].description = String::new();
        qq.options[1].label = "A".into();
        qq.options[1].description = "B — C".into();
        let text = doc(&[("q-001", qq.clone())]);
        for (line, want) in [("A — B — C", "A"), ("A — B", "A — B")] {
            let ticked = text.replacen(&format!("• [ ] {line}\n"), &format!("• [x] {line}\n"), 1);
            assert_ne!(ticked, text, "{line} is a box");
            let got = interpret(&parse(&ticked)[&Qid::new("q-001").unwrap()], &qq);
            assert_eq!(got.unwrap().unwrap().choice, [want]);
        }
    }

    #[test]
    fn ticks_and_details_become_answers() {
        let text = doc(&[
            ("q-001", q(false, false)),
            ("q-002", q(true, true)),
            ("q-003", q(false, true)),
        ])
        .replacen("• [ ] HS256", "• [x] HS256", 1)
        .replacen(
            "Details: \n",
            "Details: we already share a secret\nwith the gateway\n",
            1,
        )
        .replacen("• [ ] RS256 (Recommended)", "x", 1); // keep q-002's first line unique
        let text = {
            // q-002: tick two; q-003: free text only.
            let mut parts: Vec<String> = text.split("## ").map(str::to_string).collect();
            parts[2] = parts[2]
                .replace("• [ ] RS256", "• [x] RS256")
                .replace("• [ ] ES256", "- [X] ES256");
            parts[3] = parts[3].replace("Details: ", "Details: use Ed25519");
            parts.join("## ")
        };
        let parsed = parse(&text);
        let a1 = interpret(&parsed[&Qid::new("q-001").unwrap()], &q(false, false))
            .unwrap()
            .unwrap();
        assert_eq!(a1.choice, ["HS256"]);
        assert_eq!(
            a1.note.as_deref(),
            Some("we already share a secret\nwith the gateway")
        );
        let a2 = interpret(&parsed[&Qid::new("q-002").unwrap()], &q(true, true))
            .unwrap()
            .unwrap();
        assert_eq!(a2.choice, ["RS256 (Recommended)", "ES256"]);
        let a3 = interpret(&parsed[&Qid::new("q-003").unwrap()], &q(false, true))
            .unwrap()
            .unwrap();
        assert_eq!(a3.choice, ["use Ed25519"]);
    }

    #[test]
    fn ambiguous_or_unknown_annotations_are_located_errors() {
        let two = doc(&[("q-001", q(false, false))])
            .replace("• [ ] HS256", "• [x] HS256")
            .replace("• [ ] ES256", "• [x] ES256");
        let a = &parse(&two)[&Qid::new("q-001").unwrap()];
        let e = interpret(a, &q(false, false)).unwrap_err();
        assert!(e.starts_with("lines 12, 13: 2 boxes ticked"), "{e}");
        let unknown = doc(&[("q-001", q(false, false))]).replace("• [ ] HS256", "• [x] HS512");
        let e = interpret(
            &parse(&unknown)[&Qid::new("q-001").unwrap()],
            &q(false, false),
        )
        .unwrap_err();
        assert!(e.starts_with("line 12: \"HS512\" is not an option"), "{e}");
        let details_only =
            doc(&[("q-001", q(false, false))]).replace("Details: ", "Details: maybe");
        let e = interpret(
            &parse(&details_only)[&Qid::new("q-001").unwrap()],
            &q(false, false),
        )
        .unwrap_err();
        assert!(e.contains("no box is ticked"), "{e}");
    }
}
