//! Checks of single state files beyond their YAML shape: settings, projects, questions,
//! and answers against their question.

use std::collections::BTreeSet;

use crate::names::Qid;
use crate::state::accept::{Answer, Refusal};
use crate::state::spec::{AnswerSpec, ProjectSpec, Settings};
use crate::state::status::Question;

use super::Problem;

pub(super) fn check_settings(path: &str, s: &Settings) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Err(e) = s.business_hours.validate() {
        out.push(Problem::file(path, format!("business_hours: {e}")));
    }
    let domain_ok = !s.domain.is_empty()
        && s.domain.len() <= 200
        && s.domain
            .split('.')
            .all(|l| crate::names::check(crate::names::NameKind::Id, l).is_ok());
    if !domain_ok {
        out.push(Problem::file(
            path,
            format!(
                "domain {:?} is not a lowercase DNS name like lab.example.com",
                s.domain
            ),
        ));
    }
    for k in &s.authors.signing_keys {
        if let Some(why) = crate::state::spec::signer_line_problem(&k.value) {
            out.push(Problem::at(
                path,
                k.line,
                k.column,
                format!("authors.signing_keys: {why}"),
            ));
        }
    }
    if let Some(t) = &s.lab_url {
        let sample =
            crate::names::ProjectRef::parse("category/project").expect("a valid project reference");
        if let Err(why) =
            crate::state::spec::render_lab_url(t, &s.lab_host(&sample.project), &sample)
        {
            out.push(Problem::file(path, format!("lab_url {t:?}: {why}")));
        }
    }
    if let Some(t) = &s.builders.terminal_link {
        let sample =
            crate::names::ProjectRef::parse("category/project").expect("a valid project reference");
        if let Err(why) = crate::state::spec::render_terminal_link(t, &sample) {
            out.push(Problem::file(
                path,
                format!("builders.terminal_link {t:?}: {why}"),
            ));
        }
    }
    let sample = crate::names::TaskRef::parse("category/project/task").expect("a valid task");
    for (name, t) in &s.links {
        if let Some(why) = crate::state::spec::link_name_problem(name) {
            out.push(Problem::file(path, why));
        } else if let Err(why) = crate::state::spec::render_link(t, &sample, "/workspace") {
            out.push(Problem::file(path, format!("links.{name} {t:?}: {why}")));
        }
    }
    if s.limits.active_tasks_per_project == 0 {
        out.push(Problem::file(
            path,
            "limits.active_tasks_per_project must be at least 1",
        ));
    }
    out
}

/// A branch name that is safe in refs, refspecs and argument vectors: parts of letters,
/// digits, `.`, `_` and `-` between single `/`s, none starting with `.` or `-`, and not
/// ending in `.lock`.
fn branch_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.ends_with(".lock")
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with(['.', '-'])
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                && !part.contains("..")
        })
}

pub(super) fn check_project(path: &str, spec: &ProjectSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    if spec.repos.is_empty() {
        out.push(Problem::file(
            path,
            "repos: a project needs at least one repo",
        ));
    }
    let mut seen = BTreeSet::new();
    for r in &spec.repos {
        if !seen.insert(r.name.value.as_str()) {
            out.push(Problem::at(
                path,
                r.name.line,
                r.name.column,
                format!("duplicate repo name {:?}", r.name.value.as_str()),
            ));
        }
        if r.url.trim().is_empty() {
            out.push(Problem::file(
                path,
                format!("repo {}: url must not be empty", r.name.value),
            ));
        }
        if !branch_name_ok(&r.base) {
            out.push(Problem::file(
                path,
                format!(
                    "repo {}: base {:?} is not a branch name (letters, digits, `.`, `_`, `-` \
                     and `/` between parts)",
                    r.name.value, r.base
                ),
            ));
        }
    }
    if let Some(lab) = &spec.lab {
        let overlay = lab.overlay.value.as_str();
        let first = overlay.split('/').next().unwrap_or("");
        let msg = if overlay.starts_with('/') {
            Some("must be a relative path inside the workspace".to_string())
        } else if overlay
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        {
            Some("must not contain '..', '.' or empty components".to_string())
        } else if !seen.contains(first) {
            Some(format!(
                "must start with one of the project's repos, not {first:?}"
            ))
        } else {
            None
        };
        if let Some(msg) = msg {
            out.push(Problem::at(
                path,
                lab.overlay.line,
                lab.overlay.column,
                format!("lab.overlay {overlay:?} {msg}"),
            ));
        }
        for v in &lab.values {
            let why = if lab.tool != crate::state::spec::LabTool::Helm {
                Some("is only for lab.tool: helm")
            } else if v.value.starts_with('/')
                || v.value
                    .split('/')
                    .any(|c| c == ".." || c == "." || c.is_empty())
            {
                Some("must be a path inside the chart, without '..', '.' or empty components")
            } else {
                None
            };
            if let Some(why) = why {
                out.push(Problem::at(
                    path,
                    v.line,
                    v.column,
                    format!("lab.values {:?} {why}", v.value),
                ));
            }
        }
    }
    if let Some(channel) = spec.slack.as_ref().and_then(|s| s.channel.as_deref()) {
        let ok = !channel.is_empty()
            && channel.len() <= 80
            && channel
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            out.push(Problem::file(
                path,
                format!("slack.channel {channel:?}: Slack channel names are lowercase letters, digits, '-' and '_', at most 80 characters"),
            ));
        }
    }
    if spec.workspace.init == crate::state::spec::WorkspaceInit::Command
        && spec.workspace.run.is_none()
    {
        out.push(Problem::file(
            path,
            "workspace.init is `command` but workspace.run is not set",
        ));
    }
    out
}

pub(super) fn check_question(path: &str, q: &Question) -> Result<(), Problem> {
    if q.options.is_empty() && !q.custom {
        return Err(Problem::file(
            path,
            "a question needs options or `custom: true`",
        ));
    }
    let mut seen = BTreeSet::new();
    for o in &q.options {
        if !seen.insert(o.label.as_str()) {
            return Err(Problem::file(
                path,
                format!("duplicate option label {:?}", o.label),
            ));
        }
    }
    if !q.options.is_empty() && !q.has_option(&q.recommended) {
        return Err(Problem::file(
            path,
            format!(
                "recommended option {:?} is not one of the options",
                q.recommended
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_answer(
    path: &str,
    qid: &Qid,
    a: &AnswerSpec,
    q: Option<&Question>,
) -> Vec<Problem> {
    let Some(q) = q else {
        return vec![Problem::file(
            path,
            format!("answer to question {qid}, but questions/{qid}.yaml does not exist"),
        )];
    };
    let answer = match &a.choice {
        Some(choice) => Answer::from(&choice.value),
        None => Answer::Text(a.text.as_deref().unwrap_or_default()),
    };
    let at = |message: String| match &a.choice {
        Some(choice) => Problem::at(path, choice.line, choice.column, message),
        None => Problem::file(path, message),
    };
    q.refusals(&answer)
        .into_iter()
        .map(|why| match why {
            Refusal::TooMany(n) => at(format!(
                "{n} choices given, but question {qid} allows only one"
            )),
            Refusal::NotAnOption(l) => {
                let opts: Vec<&str> = q.options.iter().map(|o| o.label.as_str()).collect();
                at(format!(
                    "choice {l:?} is not an option of question {qid} (options: {})",
                    opts.join(", ")
                ))
            }
            Refusal::NoFreeText => at(format!(
                "question {qid} does not accept free text; give a `choice`"
            )),
        })
        .collect()
}
