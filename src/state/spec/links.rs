//! `links:` in `gaffer.yaml`: where a person watches and edits a task's work, as URL
//! templates (minijinja) filled from validated names only, e.g.
//!
//! ```yaml
//! links:
//!   code: "https://code.example.com/?folder={{ workspace }}"
//!   terminal: "https://term.example.com/{{ builder }}"
//!   state: "https://github.com/me/state/tree/main/{{ task_path }}"
//! ```
//!
//! Each is rendered when the task's builder session is recorded and kept in the task's
//! `status.yaml` `links`, so the Slack thread's parent message, `gaffer status` and the Home
//! tab show it. A template that does not render to an `http(s)://` URL with the sample names
//! is a located error in `gaffer.yaml`.

use crate::names::TaskRef;

/// The link names gaffer writes itself, which a template may not take.
pub const RESERVED: [&str; 2] = ["attach", "lab"];

/// Why `name` cannot name a link, or `None`: lowercase letters, digits and `-`, at most 30,
/// not one of gaffer's own.
pub fn link_name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Some(format!(
            "links: {name:?} is not a link name (lowercase letters, digits and -, at most 30)"
        ));
    }
    RESERVED
        .contains(&name)
        .then(|| format!("links: {name:?} is gaffer's own link; choose another name"))
}

/// Renders `template` for `task`, whose builder works in `workspace` (a directory made of
/// gaffer's configuration and validated names). The names a template can use:
/// `category`, `project`, `task`, `builder` (`<category>-<project>`), `namespace` (the
/// project's lab), `branch` (`gaffer/<task>`), `task_path` (the task's folder in the state
/// repository) and `workspace`.
pub fn render_link(template: &str, task: &TaskRef, workspace: &str) -> Result<String, String> {
    super::lab::render_url(
        template,
        minijinja::context! {
            category => task.project.category.as_str(),
            project => task.project.project.as_str(),
            task => task.task.as_str(),
            builder => task.project.builder_name(),
            namespace => task.project.lab_namespace(),
            branch => format!("gaffer/{}", task.task),
            task_path => format!(
                "projects/{}/{}/tasks/{}",
                task.project.category, task.project.project, task.task
            ),
            workspace => workspace,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_render_from_validated_names_into_urls_only() {
        let t = TaskRef::parse("ai-dev/api/jwt-auth").unwrap();
        assert_eq!(
            render_link(
                "https://code.example.com/?folder={{ workspace }}&b={{ branch }}",
                &t,
                "/srv/builders/ai-dev-api"
            )
            .unwrap(),
            "https://code.example.com/?folder=/srv/builders/ai-dev-api&b=gaffer/jwt-auth"
        );
        assert_eq!(
            render_link("https://gh.example.com/s/tree/main/{{ task_path }}", &t, "").unwrap(),
            "https://gh.example.com/s/tree/main/projects/ai-dev/api/tasks/jwt-auth"
        );
        // Not a URL, an unknown name, a template error: refused with why.
        assert!(render_link("javascript:alert(1)//{{ task }}", &t, "").is_err());
        assert!(render_link("https://x/{{ secret }}", &t, "").is_err());
        assert!(render_link("https://x/{{ task", &t, "").is_err());
        assert!(render_link("https://x/{{ workspace }}", &t, "/a b").is_err());
    }

    #[test]
    fn a_task_name_outside_the_rules_never_reaches_a_template() {
        // Names are validated when parsed: nothing else can make a TaskRef.
        for bad in [
            "ai-dev/api/Jwt",
            "ai-dev/api/a b",
            "ai-dev/api/../x",
            "ai-dev/api/a&b=1",
        ] {
            assert!(TaskRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_names_follow_the_rules() {
        assert!(link_name_problem("code-server").is_none());
        assert!(link_name_problem("Code").is_some());
        assert!(link_name_problem("pr:api").is_some());
        assert!(link_name_problem("attach").is_some());
        assert!(link_name_problem("").is_some());
    }
}
