//! `gaffer init DIR`: a new state repository (bare git repo with a first commit).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, CmdResult};
use crate::git::{self, Git};

/// Arguments of `gaffer init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to create the bare repository; must not exist or be an empty directory.
    pub dir: PathBuf,
    /// The lab domain written to gaffer.yaml (lab hosts are `{project}.builder.<domain>`).
    #[arg(long, default_value = "lab.example.com")]
    pub domain: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
}

/// The `gaffer.yaml` written by `gaffer init`.
pub fn initial_settings(domain: &str, answer_author: Option<&str>) -> String {
    let authors = match answer_author {
        Some(a) => format!(
            "  answers: [{}]\n",
            serde_json::Value::String(a.to_string())
        ),
        None => "  answers: []\n".to_string(),
    };
    format!(
        "# yaml-language-server: $schema=schema/gaffer.schema.json\n\
         domain: {domain}\n\
         business_hours:\n  timezone: Europe/London\n  days: [mon, tue, wed, thu, fri]\n  start: \"09:00\"\n  end: \"17:00\"\n  holidays: []\n\
         questions:\n  timeout: 2h\n  on_timeout: recommended\n  continue: immediately\n\
         progress:\n  summary_every: 90m\n\
         limits:\n  active_tasks_per_project: 1\n\
         # Plan each task with BMAD (a spec to approve) before it is built; none, quick,\n\
         # full or party (docs/planning.md). Needs `gaffer reconcile --bmad`.\n\
         plan:\n  mode: quick\n\
         authors:\n{authors}  slack_users: []\n"
    )
}

/// Runs `gaffer init`.
pub fn cmd_init(args: InitArgs) -> CmdResult {
    Git::check_version()?;
    if args.dir.exists() {
        let empty = args.dir.is_dir()
            && std::fs::read_dir(&args.dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(CliError::user(format!(
                "{} already exists and is not an empty directory",
                args.dir.display()
            ))
            .hint("choose a new path; gaffer init never overwrites anything"));
        }
    }
    crate::names::check(
        crate::names::NameKind::Id,
        args.branch.replace('/', "-").as_str(),
    )
    .map_err(|e| CliError::user(format!("--branch: {e}")))?;
    let settings_text = initial_settings(&args.domain, None);
    let settings: crate::state::spec::Settings =
        crate::state::yaml::parse(settings_text.as_bytes()).map_err(|e| {
            CliError::user(format!(
                "--domain {:?} gives an invalid gaffer.yaml: {e}",
                args.domain
            ))
        })?;
    let snapshot = crate::state::snapshot::Snapshot::from_files([(
        "gaffer.yaml".to_string(),
        crate::state::snapshot::RawContent::Blob(settings_text.clone().into_bytes()),
    )]);
    if let Some(p) = snapshot.all_problems().first() {
        return Err(CliError::user(format!(
            "--domain {:?}: {}",
            settings.domain, p.message
        )));
    }

    std::fs::create_dir_all(&args.dir)
        .map_err(|e| CliError::user(format!("cannot create {}: {e}", args.dir.display())))?;
    Git::new(&args.dir).run(["init", "--quiet", "--bare", "-b", args.branch.as_str()])?;
    let g = git::identity_env(Git::new(&args.dir));
    let author = g
        .run(["config", "--get", "user.email"])
        .ok()
        .filter(|s| !s.is_empty());
    let mut files: Vec<(String, Option<Vec<u8>>)> = vec![
        (
            "gaffer.yaml".into(),
            Some(initial_settings(&args.domain, author.as_deref()).into_bytes()),
        ),
        (
            "README.md".into(),
            Some(
                include_str!("templates/state-readme.md")
                    .as_bytes()
                    .to_vec(),
            ),
        ),
    ];
    for (name, text) in crate::schema::all() {
        files.push((format!("schema/{name}"), Some(text.into_bytes())));
    }
    let commit = git::commit_files(&g, None, &files, "gaffer: init state repository")?;
    g.run([
        "update-ref",
        &format!("refs/heads/{}", args.branch),
        &commit,
        "",
    ])?;
    let path = std::fs::canonicalize(&args.dir).unwrap_or(args.dir.clone());
    println!("created state repository {}", path.display());
    println!(
        "  branch {} at {}",
        args.branch,
        &commit[..12.min(commit.len())]
    );
    println!("next: add a project under projects/<category>/<project>/project.yaml, then");
    println!(
        "  gaffer new task CATEGORY/PROJECT/TASK --title \"...\" --state {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
