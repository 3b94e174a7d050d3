//! The steps of each plan mode (quick: a spec; party: the personas' discussion, then a spec;
//! full: PRD → architecture → epics and stories, each a BMAD skill), and for a `full` plan
//! once approved, its stories as child tasks — `tasks/<t>-<n>-<m>/task.yaml` with `parent:`
//! and `story:`, built one after another — while the parent waits in `BuildingStories` and
//! is `Promoted` when they are.

use std::time::Duration;

use super::{Plan, View};
use crate::names::{TaskName, TaskRef};
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::epics::{self, Story};
use crate::state::planning::{PlanDocument, PlanMode, PlanOverrides, sha256};
use crate::state::spec::TaskSpec;
use crate::state::status::{MilestoneKind, Phase};

/// One planning step: its name, the BMAD skill that does it, and what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// `spec`, `prd`, `architecture`, `epics`.
    pub name: &'static str,
    /// The BMAD skill.
    pub skill: &'static str,
    /// What the planner writes, for its prompt.
    pub what: &'static str,
}

const SPEC: Step = Step {
    name: "spec",
    skill: "bmad-spec",
    what: "one spec (SPEC.md and its companions)",
};

/// The steps of a `full` plan, in order.
const FULL: [Step; 3] = [
    Step {
        name: "prd",
        skill: "bmad-prd",
        what: "the product requirements (a PRD), as John the product manager",
    },
    Step {
        name: "architecture",
        skill: "bmad-architecture",
        what: "the architecture, as Winston the architect, from the PRD",
    },
    Step {
        name: "epics",
        skill: "bmad-create-epics-and-stories",
        what: "the epics and stories, as John, in planning-artifacts/epics.md: each epic as \
               `## Epic N: title`, each story as `### Story N.M: title` with its user story and \
               acceptance criteria (Given/When/Then)",
    },
];

/// The steps of a `party` plan: the personas discuss, then the spec is written from it.
const PARTY: [Step; 2] = [
    Step {
        name: "party",
        skill: "bmad-party-mode",
        what: "a discussion of the task's contested decisions by the BMAD personas (John, \
               Winston, Sally, Mary, Amelia), non-interactive (--non-interactive) to its natural \
               close, its transcript as planning-artifacts/party-mode.md",
    },
    SPEC,
];

/// The steps of a plan made in `mode`.
pub fn steps(mode: PlanMode) -> &'static [Step] {
    match mode {
        PlanMode::Full => &FULL,
        PlanMode::Party => &PARTY,
        _ => std::slice::from_ref(&SPEC),
    }
}

/// The step named `name` of `mode` (its first when the name is unknown).
pub fn step(mode: PlanMode, name: &str) -> Step {
    let all = steps(mode);
    all.iter()
        .copied()
        .find(|s| s.name == name)
        .unwrap_or(all[0])
}

/// The step after `name`, when there is one.
pub fn next(mode: PlanMode, name: &str) -> Option<Step> {
    let all = steps(mode);
    let i = all.iter().position(|s| s.name == name)?;
    all.get(i + 1).copied()
}

/// A child task: its name and spec.
pub type Child = (TaskRef, TaskSpec);

/// The plan's epics file (`…/epics.md`), by its path under `plan/`.
fn epics_doc(view: &View) -> Option<(&String, &String)> {
    view.plan_docs
        .iter()
        .find(|(p, _)| p.rsplit('/').next() == Some("epics.md"))
}

/// The child tasks of an approved `full` plan: one per story of its epics file, or the
/// located problem that stops it (nothing is created then).
pub fn children(view: &View, version: u32) -> Result<Vec<Child>, String> {
    let Some((path, text)) = epics_doc(view) else {
        return Err(format!(
            "{}/plan/: the approved plan has no epics.md, so there are no stories to build",
            task_dir(&view.t)
        ));
    };
    let stories = epics::parse(text).map_err(|e| {
        format!(
            "{}/plan/{path}:{}:{}: {}",
            task_dir(&view.t),
            e.line,
            e.column,
            e.message
        )
    })?;
    stories
        .iter()
        .map(|s| child(view, s, version).map_err(|e| format!("story {}: {e}", s.key())))
        .collect()
}

fn child(view: &View, story: &Story, version: u32) -> Result<Child, String> {
    let suffix = format!("-{}-{}", story.epic, story.number);
    let limit = crate::names::NameKind::Task.max_len();
    let base: String = view
        .t
        .task
        .as_str()
        .chars()
        .take(limit.saturating_sub(suffix.len()))
        .collect();
    let name = TaskName::new(format!("{}{suffix}", base.trim_end_matches('-')))
        .map_err(|e| e.to_string())?;
    let spec = TaskSpec {
        title: format!("{} {}", story.key(), story.title),
        description: format!(
            "{}\nStory {} of {} (plan v{version}, approved).",
            story.text,
            story.key(),
            view.t
        ),
        priority: view.spec.priority,
        suspend: false,
        cancel: false,
        retry: 0,
        questions: None,
        budget: None,
        plan: Some(PlanOverrides {
            mode: Some(PlanMode::None),
            document_over: None,
        }),
        parent: Some(view.t.task.clone()),
        story: Some(story.key()),
    };
    Ok((
        TaskRef {
            project: view.t.project.clone(),
            task: name,
        },
        spec,
    ))
}

/// `projects/<c>/<p>/tasks/<t>`.
fn task_dir(t: &TaskRef) -> String {
    let spec = crate::state::StatePath::TaskSpec(t.clone()).to_path();
    spec.trim_end_matches("/task.yaml").to_string()
}

/// `N.M` as numbers, for ordering stories.
fn story_order(s: &str) -> (u32, u32) {
    let (e, m) = s.split_once('.').unwrap_or((s, "0"));
    (e.parse().unwrap_or(u32::MAX), m.parse().unwrap_or(u32::MAX))
}

/// For a story task: the earlier story of its parent that is not done yet, if any (stories
/// are built in order, each on what the one before left).
pub fn waits_for(view: &View) -> Option<String> {
    let (parent, story) = (view.spec.parent.as_ref()?, view.spec.story.as_deref()?);
    earlier_open(view.siblings.iter(), parent, story)
        .map(|s| format!("{} ({})", s.task.task, s.phase))
}

/// Whether queued sibling `s` waits for an earlier story (so it takes no turn in the queue):
/// against the other siblings, and this task as `me` (its parent, story and phase).
pub fn sibling_waits(view: &View, s: &super::Sibling, me_phase: Phase) -> bool {
    let (Some(parent), Some(story)) = (s.parent.as_ref(), s.story.as_deref()) else {
        return false;
    };
    let me_earlier = view.spec.parent.as_ref() == Some(parent)
        && view
            .spec
            .story
            .as_deref()
            .is_some_and(|m| story_order(m) < story_order(story))
        && !matches!(me_phase, Phase::Promoted | Phase::Cancelled);
    me_earlier || earlier_open(view.siblings.iter(), parent, story).is_some()
}

/// The first sibling that is an earlier, unfinished story of `parent` than `story`.
fn earlier_open<'a>(
    siblings: impl Iterator<Item = &'a super::Sibling>,
    parent: &TaskName,
    story: &str,
) -> Option<&'a super::Sibling> {
    let mine = story_order(story);
    siblings
        .filter(|s| s.parent.as_ref() == Some(parent))
        .filter(|s| s.story.as_deref().is_some_and(|o| story_order(o) < mine))
        .find(|s| !matches!(s.phase, Phase::Promoted | Phase::Cancelled))
}

/// Where gaffer keeps BMAD's sprint status, under the plan's folder.
pub const SPRINT_STATUS: &str = "implementation-artifacts/sprint-status.yaml";

/// BMAD's `sprint-status.yaml` for the stories as their tasks stand: `backlog` (not started),
/// `in-progress`, `review` (in review), `done` (promoted); a cancelled story is `backlog`.
/// Its timestamp is the latest story move, so an unchanged state writes nothing.
fn sprint_status(view: &View, stories: &[Story], of: &[&super::Sibling]) -> String {
    let phase = |key: &str| {
        of.iter()
            .find(|s| s.story.as_deref() == Some(key))
            .map(|s| s.phase)
    };
    let state = |p: Option<Phase>| match p {
        Some(Phase::Promoted) => "done",
        Some(Phase::InReview) => "review",
        Some(Phase::Pending | Phase::Queued | Phase::Cancelled) | None => "backlog",
        Some(_) => "in-progress",
    };
    let updated = of
        .iter()
        .filter_map(|s| s.since)
        .max()
        .map(|t| t.strftime("%m-%d-%Y %H:%M").to_string())
        .unwrap_or_default();
    let mut out = format!(
        "# Written by gaffer from the phases of this plan's story tasks (docs/planning.md).\n\
         generated: {updated}\nlast_updated: {updated}\nproject: {}\nproject_key: NOKEY\n\
         tracking_system: file-system\nstory_location: \"_bmad-output/implementation-artifacts\"\n\n\
         development_status:\n",
        view.t.project
    );
    let mut epics: Vec<u32> = stories.iter().map(|s| s.epic).collect();
    epics.dedup();
    for e in epics {
        let states: Vec<&str> = stories
            .iter()
            .filter(|s| s.epic == e)
            .map(|s| state(phase(&s.key())))
            .collect();
        let epic = if states.iter().all(|s| *s == "done") {
            "done"
        } else if states.iter().all(|s| *s == "backlog") {
            "backlog"
        } else {
            "in-progress"
        };
        out.push_str(&format!("  epic-{e}: {epic}\n"));
        for s in stories.iter().filter(|s| s.epic == e) {
            let slug: String = s
                .title
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let slug = slug
                .split('-')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            out.push_str(&format!(
                "  {}-{}-{slug}: {}\n",
                s.epic,
                s.number,
                state(phase(&s.key()))
            ));
        }
        out.push_str(&format!("  epic-{e}-retrospective: optional\n"));
    }
    out
}

/// Writes the stories' states into the plan's `sprint-status.yaml`, in the state repository
/// and in the workspace's `_bmad-output/` (unless another task is planning there), so BMAD's
/// own tools read a true state.
async fn write_sprint_status(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    of: &[&super::Sibling],
) -> Result<(), ReconcileError> {
    let Some(stories) = epics_doc(view).and_then(|(_, text)| epics::parse(text).ok()) else {
        return Ok(());
    };
    let text = sprint_status(view, &stories, of);
    if view.plan_docs.get(SPRINT_STATUS) == Some(&text) {
        return Ok(());
    }
    let Some(mut status) = plan.plan_status.clone() else {
        return Ok(());
    };
    status.documents.retain(|d| d.path != SPRINT_STATUS);
    status.documents.push(PlanDocument {
        path: SPRINT_STATUS.into(),
        sha256: sha256(&text),
    });
    status.documents.sort_by(|a, b| a.path.cmp(&b.path));
    plan.plan_status = Some(status);
    plan.plan_docs
        .insert(SPRINT_STATUS.into(), Some(text.clone()));
    if view.siblings.iter().all(|s| s.phase != Phase::Planning) {
        let mut docs = view.plan_docs.clone();
        docs.insert(SPRINT_STATUS.into(), text);
        let (planner, dir, task) = (
            ctx.planner.clone(),
            ctx.workspaces.local_dir(&view.t.project, &view.project),
            view.t.task.clone(),
        );
        let written =
            super::blocking(move || Ok::<_, ReconcileError>(planner.restore(&dir, &task, &docs)))
                .await?;
        if let Err(e) = written {
            tracing::warn!(task = %view.t, error = %e, "cannot write sprint-status.yaml in the workspace");
        }
    }
    Ok(())
}

/// `BuildingStories`: the parent shows its stories' phases, and is `Promoted` when every
/// story is done (cancelled ones aside), `Cancelled` when every story was cancelled.
pub async fn building(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let mine: Vec<_> = view
        .siblings
        .iter()
        .filter(|s| s.parent.as_ref() == Some(&view.t.task))
        .collect();
    write_sprint_status(ctx, view, plan, &mine).await?;
    if mine.is_empty() {
        plan.waiting(
            "NoStories",
            "none of the plan's story tasks exists any more; cancel this task or raise retry",
        );
        return Ok(Action::await_change());
    }
    let mut sorted = mine.clone();
    sorted.sort_by_key(|s| story_order(s.story.as_deref().unwrap_or("")));
    let promoted = mine.iter().filter(|s| s.phase == Phase::Promoted).count();
    let cancelled = mine.iter().filter(|s| s.phase == Phase::Cancelled).count();
    if promoted + cancelled == mine.len() {
        if promoted == 0 {
            plan.transition(
                Phase::Cancelled,
                "StoriesCancelled",
                "every story was cancelled",
            );
        } else {
            let also = if cancelled > 0 {
                format!(" ({cancelled} cancelled)")
            } else {
                String::new()
            };
            plan.milestone(
                MilestoneKind::Plan,
                format!("🏁 all {promoted} stories promoted{also}"),
                None,
            );
            plan.transition(
                Phase::Promoted,
                "StoriesPromoted",
                format!("{promoted} stories promoted{also}"),
            );
        }
        return Ok(Action::await_change());
    }
    let shown: Vec<String> = sorted
        .iter()
        .map(|s| format!("{} {}", s.story.as_deref().unwrap_or("?"), s.phase))
        .collect();
    plan.waiting(
        "BuildingStories",
        format!(
            "stories: {} ({promoted}/{} promoted)",
            shown.join(", "),
            mine.len()
        ),
    );
    // The stories wake their parent when they move; this is the safety net.
    Ok(Action::requeue(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_mode() {
        assert_eq!(step(PlanMode::Quick, "spec").skill, "bmad-spec");
        assert_eq!(step(PlanMode::Full, "").name, "prd");
        assert_eq!(
            next(PlanMode::Full, "prd").map(|s| s.name),
            Some("architecture")
        );
        assert_eq!(
            next(PlanMode::Full, "architecture").map(|s| s.name),
            Some("epics")
        );
        assert_eq!(next(PlanMode::Full, "epics"), None);
        assert_eq!(next(PlanMode::Quick, "spec"), None);
        assert!(story_order("1.10") > story_order("1.2"));
        assert_eq!(step(PlanMode::Party, "").skill, "bmad-party-mode");
        assert_eq!(next(PlanMode::Party, "party").map(|s| s.name), Some("spec"));
    }
}
