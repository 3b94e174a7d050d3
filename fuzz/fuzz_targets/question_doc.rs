#![no_main]
//! Question documents: the builder's questions (its text, header, options, all untrusted)
//! rendered into the document a person annotates, and any annotated text read back.
//!
//! Properties: an untouched document answers nothing (no builder text can tick a box or
//! write Details); ticking one box answers exactly that option; any text at all is read
//! without panicking.
//!
//! Input: NUL-separated fields: flags, text, header, then option labels and descriptions
//! alternating; the last field is also read as an annotated document.

use std::collections::BTreeMap;

use gaffer::names::Qid;
use gaffer::state::doc::{self, DocAnswer};
use gaffer::state::status::{Question, QuestionKind, QuestionOption, QuestionState};
use libfuzzer_sys::fuzz_target;

fn question(flags: u8, text: &str, header: &str, options: Vec<QuestionOption>) -> Question {
    Question {
        kind: QuestionKind::Question,
        text: text.to_string(),
        header: header.to_string(),
        recommended: options.first().map(|o| o.label.clone()).unwrap_or_default(),
        options,
        multiple: flags & 1 != 0,
        custom: flags & 2 != 0,
        asked_at: jiff::Timestamp::UNIX_EPOCH,
        deadline: None,
        state: QuestionState::Open,
        request_id: None,
        decision: None,
        point: BTreeMap::new(),
        provisional_branch: None,
        parent_branch: None,
        problems: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fields: Vec<&str> = text.split('\0').collect();
    let [flags, qtext, header, rest @ ..] = fields.as_slice() else {
        return;
    };
    let flags = flags.bytes().next().unwrap_or(0);
    let options: Vec<QuestionOption> = rest
        .chunks(2)
        .map(|c| QuestionOption {
            label: c[0].to_string(),
            description: c.get(1).unwrap_or(&"").to_string(),
        })
        .collect();
    let q = question(flags, qtext, header, options);
    let qid = Qid::new("q-001").expect("a qid");
    let other = Qid::new("q-002").expect("a qid");
    let qs = vec![(qid.clone(), q.clone()), (other.clone(), q.clone())];
    let rendered = doc::render("demo/web-api/t", qtext, &qs, &jiff::tz::TimeZone::UTC);

    let read = doc::parse(&rendered);
    for id in [&qid, &other] {
        let a = read
            .get(id)
            .unwrap_or_else(|| panic!("{id} is missing from\n{rendered}"));
        assert_eq!(
            doc::interpret(a, &q),
            Ok(None),
            "an untouched document answered {id}:\n{rendered}"
        );
    }

    // Tick each box of q-002 in turn: exactly that option is the answer, q-001 stays open.
    let boxes: Vec<usize> = rendered
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("• [ ]"))
        .map(|(i, _)| i)
        .collect();
    let second = &boxes[boxes.len() / 2..];
    // The first few boxes: each tick re-reads the whole document.
    for (k, line) in second.iter().enumerate().take(8) {
        // Two options whose boxes read the same (spaces around the text aside) cannot be
        // told apart by anyone.
        let lines: Vec<&str> = rendered.lines().collect();
        let text = |i: usize| lines[i]["• [ ]".len()..].trim();
        let distinct = second.iter().filter(|&&i| text(i) == text(*line)).count() == 1;
        let ticked: Vec<String> = rendered
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == *line {
                    l.replacen("[ ]", "[x]", 1)
                } else {
                    l.to_string()
                }
            })
            .collect();
        let read = doc::parse(&ticked.join("\n"));
        assert_eq!(doc::interpret(&read[&qid], &q), Ok(None));
        let got = doc::interpret(&read[&other], &q);
        if distinct {
            assert_eq!(
                got,
                Ok(Some(DocAnswer {
                    choice: vec![q.options[k].label.clone()],
                    note: None
                })),
                "ticking option {k}:\n{}",
                ticked.join("\n")
            );
        }
    }

    // Anything a person might commit.
    let read = doc::parse(rest.last().unwrap_or(&""));
    for a in read.values() {
        let _ = doc::interpret(a, &q);
    }
});
