//! Every prompt gaffer sends to a builder, as minijinja templates in one place. Values are
//! passed as data (titles, answers, review text stay text); the templates say the words.
//! Blocks trim their own line, and a template's last newline is kept.

use std::sync::LazyLock;

use minijinja::Environment;

use crate::reconcile::ReconcileError;

/// The first prompt of a task.
const TASK: &str = r#"# Task: {{ title }}

Project: {{ project }}
Branch: {{ branch }}

{% if description %}
{{ description }}

{% endif %}
## Repositories (git worktrees, already on the branch)
{% for r in repos %}
- {{ r.name }}: {{ r.dir }}
{% endfor %}

## How to work
- Keep a todo list and complete items as you go; each completed item is reported.
- When you need a decision, ask with the question tool: list the recommended option first and
  end its label with " (Recommended)". You may be answered at once with the recommended
  option and told later if a person chose differently.
{% if lab %}
- Your work is deployed from {{ lab.overlay }} to the lab namespace {{ lab.namespace }}; LAB_NAMESPACE and LAB_URL are set for tests.
{% if lab.test %}
- The lab tests run with: {{ lab.test }}
{% endif %}
{% endif %}
- When the task is complete, end with a final message whose last line is
  `{{ done_marker }} <one-line summary of what you did>`. Do not write that line before the work is done.
{% if plan %}

{% if plan.of %}
## The approved plan of {{ plan.of }} (version {{ plan.version }})
This task is one story of that plan: build the story above, within this architecture.
{% else %}
## The approved plan (version {{ plan.version }})
Build what this plan says. Its documents are also in {{ plan.dir }}.
{% endif %}
{% for d in plan.docs %}

### {{ d.path }}
{{ d.text }}
{% endfor %}
{% endif %}
"#;

/// The first planning turn of a task (`plan.mode: quick`).
const PLAN: &str = r#"# Plan: {{ title }}

Project: {{ project }}

{% if description %}
{{ description }}

{% endif %}
This is the planning stage: nothing is built yet, and you must not change the repositories.
Read them as you need to:
{% for r in repos %}
- {{ r.name }}: {{ r.dir }}
{% endfor %}

## How to plan
- Load the BMAD skill `{{ skill }}` with the skill tool and follow it, headless, to write {{ what }}
  for the task above{% if slug %} (slug `{{ slug }}`){% endif %}. Write every document under {{ out }}; edit nothing else.
- When you need a decision, ask with the question tool: list the recommended option first and
  end its label with " (Recommended)". Do not print menus and do not end your turn to wait.
- When the documents are written, end with a final message whose last line is
  `{{ done_marker }} <one-line summary of the plan>`. A person reviews and approves the plan
  before anything is built.
"#;

/// The next step of a `full` plan, in the same planning session.
const PLAN_STEP: &str = r#"The plan's next step ({{ step }}): load the BMAD skill `{{ skill }}` with the skill tool and
follow it, headless, to write {{ what }}, building on the documents already under {{ out }}.
Write every document under {{ out }}; edit nothing else. Ask with the question tool when you
need a decision. When the documents are written, end with a final message whose last line is
`{{ done_marker }} <one-line summary>`.
"#;

/// A person asked for changes to the plan (or edited its documents).
const PLAN_CHANGES: &str = r#"{{ who }} reviewed version {{ version }} of the plan and asks for changes:

{{ changes }}

Update the plan documents under {{ out }} accordingly (the same BMAD skill, its "update"
intent), then end with a final message whose last line is `{{ done_marker }} <one-line summary of what changed>`.
"#;

/// After a suspend or a retry, when the builder goes on where it was.
const RESUMED: &str = "You were paused and are resumed now; carry on where you left off.";

/// After a transient error (overload, rate limit), once its pause is over.
const RETRY: &str = "The last request failed with a transient error; please continue.";

/// The runtime restarted under a turn.
const INTERRUPTED: &str = "The OpenCode server was restarted and your last turn was cut off. \
Check the state of the files you were working on and carry on with the task.";

/// The builder ended its turn without saying it is done.
/// The task budget was raised after it stopped the builder's turn.
const BUDGET_RAISED: &str =
    "Your budget for this task was raised to {{ limit }}. Carry on where you stopped.";

/// A person's message to the builder, from the task's Slack thread or `gaffer say`.
const MESSAGE: &str = r#"A message from {{ who }} about this task:

{{ text }}

Take it into account and carry on with the task."#;

const NUDGE: &str = "You ended your turn without reporting the task complete. If it is \
complete, reply with a final message whose last line is `DONE: <one-line summary>`. If you \
need a decision, ask with the question tool. Otherwise carry on with the task.";

/// A person answered differently from what the builder went on with.
const OVERRIDDEN: &str = r#"A person answered your earlier question "{{ question }}": {{ choice }}.{% if note %} Their note: {{ note }}{% endif %} You had gone on with "{{ recommended }}". That work was set aside on branch {{ branch }} ({{ kept_at }}) and the worktree was reset to where you asked the question, on {{ parent }}. Continue the task with this answer; reuse from the set-aside work only what still fits."#;

/// Lab tests failed after a deploy.
const TESTS_FAILED: &str = r#"The lab tests failed ({{ failed }} of {{ total }}):
{% for f in failures %}
- {{ f.name }}: {{ f.message }}
{% endfor %}
Please fix them; the work is deployed and tested again when you are done.
"#;

/// The deploy did not become ready (a container crash-loops, a probe fails), or the
/// overlay did not render.
const LAB_FAILED: &str = r#"Deploying your work to the lab failed{% if crashing %}: a container crash-loops{% endif %}.
{{ report }}
{% if logs %}
{{ logs }}
{% endif %}
Please fix it; the work is deployed and tested again when you are done.
"#;

/// Reviewers asked for changes.
const CHANGES_REQUESTED: &str = r#"Reviewers asked for changes to your pull requests:
{% for r in reviews %}

{{ r.user }} on {{ r.repo }} #{{ r.number }}:
{% if r.body %}
{{ r.body }}
{% endif %}
{% for c in r.comments %}
- {{ c }}
{% endfor %}
{% endfor %}

Please address them; when you are done the work is deployed, tested and the pull requests are updated.
"#;

/// A pull request conflicts with its base.
const MERGE_CONFLICT: &str = r#"Pull request {{ repo }} #{{ number }} cannot be merged: {{ why }}.
Please merge the latest `{{ base }}` into your branch in repos/{{ repo }} (git fetch origin && git merge origin/{{ base }}), resolve the conflicts and commit.
"#;

/// The prompts by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// [`TASK`].
    Task,
    /// [`RESUMED`].
    Resumed,
    /// [`RETRY`].
    Retry,
    /// [`INTERRUPTED`].
    Interrupted,
    /// [`NUDGE`].
    Nudge,
    /// [`OVERRIDDEN`].
    Overridden,
    /// [`TESTS_FAILED`].
    TestsFailed,
    /// [`LAB_FAILED`].
    LabFailed,
    /// [`CHANGES_REQUESTED`].
    ChangesRequested,
    /// [`MERGE_CONFLICT`].
    MergeConflict,
    /// [`PLAN`].
    Plan,
    /// [`PLAN_CHANGES`].
    PlanChanges,
    /// [`PLAN_STEP`].
    PlanStep,
    /// [`MESSAGE`].
    Message,
    /// [`BUDGET_RAISED`].
    BudgetRaised,
}

impl Prompt {
    const ALL: [(Prompt, &'static str, &'static str); 15] = [
        (Prompt::Task, "task.txt", TASK),
        (Prompt::Resumed, "resumed.txt", RESUMED),
        (Prompt::Retry, "retry.txt", RETRY),
        (Prompt::Interrupted, "interrupted.txt", INTERRUPTED),
        (Prompt::Nudge, "nudge.txt", NUDGE),
        (Prompt::Overridden, "overridden.txt", OVERRIDDEN),
        (Prompt::TestsFailed, "tests-failed.txt", TESTS_FAILED),
        (Prompt::LabFailed, "lab-failed.txt", LAB_FAILED),
        (
            Prompt::ChangesRequested,
            "changes-requested.txt",
            CHANGES_REQUESTED,
        ),
        (Prompt::MergeConflict, "merge-conflict.txt", MERGE_CONFLICT),
        (Prompt::Plan, "plan.txt", PLAN),
        (Prompt::PlanChanges, "plan-changes.txt", PLAN_CHANGES),
        (Prompt::PlanStep, "plan-step.txt", PLAN_STEP),
        (Prompt::Message, "message.txt", MESSAGE),
        (Prompt::BudgetRaised, "budget-raised.txt", BUDGET_RAISED),
    ];

    fn name(self) -> &'static str {
        Prompt::ALL
            .iter()
            .find(|(p, _, _)| *p == self)
            .map_or("", |(_, n, _)| n)
    }
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    for (_, name, source) in Prompt::ALL {
        // The templates are constants, checked by the tests below.
        env.add_template(name, source)
            .expect("prompt templates are valid");
    }
    env
});

/// Renders prompt `p` with `values`.
pub fn render(p: Prompt, values: minijinja::Value) -> Result<String, ReconcileError> {
    Ok(ENV.get_template(p.name())?.render(values)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn every_prompt_renders() {
        for (p, _, _) in Prompt::ALL {
            render(p, context! {}).unwrap();
        }
    }

    #[test]
    fn the_task_prompt_reads_as_before() {
        let text = render(
            Prompt::Task,
            context! {
                title => "Add JWT", project => "ai-dev/api", branch => "gaffer/jwt",
                description => "Use RS256.",
                repos => vec![context! { name => "domain-apis", dir => "/w/repos/domain-apis" }],
                lab => context! { overlay => "k8s-lab/overlays/builder", namespace => "ai-dev-api-lab", test => "pytest" },
                done_marker => "DONE:",
            },
        )
        .unwrap();
        assert_eq!(
            text,
            "# Task: Add JWT\n\nProject: ai-dev/api\nBranch: gaffer/jwt\n\nUse RS256.\n\n\
             ## Repositories (git worktrees, already on the branch)\n- domain-apis: /w/repos/domain-apis\n\
             \n## How to work\n- Keep a todo list and complete items as you go; each completed item is reported.\n\
             - When you need a decision, ask with the question tool: list the recommended option first and\n  \
             end its label with \" (Recommended)\". You may be answered at once with the recommended\n  \
             option and told later if a person chose differently.\n\
             - Your work is deployed from k8s-lab/overlays/builder to the lab namespace ai-dev-api-lab; LAB_NAMESPACE and LAB_URL are set for tests.\n\
             - The lab tests run with: pytest\n\
             - When the task is complete, end with a final message whose last line is\n  \
             `DONE: <one-line summary of what you did>`. Do not write that line before the work is done.\n"
        );
        let bare = render(
            Prompt::Task,
            context! { title => "T", project => "c/p", branch => "gaffer/t", repos => Vec::<()>::new(), done_marker => "DONE:" },
        )
        .unwrap();
        assert!(bare.starts_with("# Task: T\n\nProject: c/p\nBranch: gaffer/t\n\n## Repositories"));
        assert!(!bare.contains("lab namespace"));
    }

    #[test]
    fn feedback_prompts_read_as_before() {
        let tests = render(
            Prompt::TestsFailed,
            context! { failed => 1, total => 3, failures => vec![context! { name => "t1", message => "boom" }] },
        )
        .unwrap();
        assert_eq!(
            tests,
            "The lab tests failed (1 of 3):\n- t1: boom\nPlease fix them; the work is deployed and tested again when you are done.\n"
        );
        let review = render(
            Prompt::ChangesRequested,
            context! { reviews => vec![
                context! { user => "bob", repo => "api", number => 7, body => "Rename it.", comments => vec!["a.rs:3: here"] },
                context! { user => "eve", repo => "web", number => 8, body => "", comments => Vec::<String>::new() },
            ] },
        )
        .unwrap();
        assert_eq!(
            review,
            "Reviewers asked for changes to your pull requests:\n\nbob on api #7:\nRename it.\n- a.rs:3: here\n\
             \neve on web #8:\n\nPlease address them; when you are done the work is deployed, tested and the pull \
             requests are updated.\n"
        );
        let merge = render(
            Prompt::MergeConflict,
            context! { repo => "api", number => 7, why => "not mergeable", base => "main" },
        )
        .unwrap();
        assert_eq!(
            merge,
            "Pull request api #7 cannot be merged: not mergeable.\nPlease merge the latest `main` \
             into your branch in repos/api (git fetch origin && git merge origin/main), \
             resolve the conflicts and commit.\n"
        );
        let over = render(
            Prompt::Overridden,
            context! { question => "Which?", choice => "B", note => "why not", recommended => "A",
            branch => "gaffer/t/q-001", kept_at => "api 0123", parent => "gaffer/t" },
        )
        .unwrap();
        assert_eq!(
            over,
            "A person answered your earlier question \"Which?\": B. Their note: why not You had gone on \
             with \"A\". That work was set aside on branch gaffer/t/q-001 (api 0123) and the worktree \
             was reset to where you asked the question, on gaffer/t. Continue the task with this \
             answer; reuse from the set-aside work only what still fits."
        );
    }

    #[test]
    fn untrusted_text_stays_text() {
        let text = render(
            Prompt::MergeConflict,
            context! { repo => "api", number => 1, why => "{{ 7*7 }} <b>", base => "main" },
        )
        .unwrap();
        assert!(text.contains("{{ 7*7 }} <b>"), "{text}");
    }
}
