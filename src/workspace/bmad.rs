//! The planner's files in a builder's workspace: the real BMAD Method installed there (and
//! mended for OpenCode), and `_bmad-output/`, the folder a planning turn writes its
//! documents to, which gaffer fills with the task's plan before the turn and reads after it.
//!
//! BMAD is never fetched at run time: gaffer runs the installer of a `bmad-method` package
//! already on disk (`--bmad`, `GAFFER_BMAD`), which works offline (docs/planning.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::names::TaskName;
use crate::state::planning::{MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, check_doc_path};

/// The bmad-method version gaffer is tested with (its installer's flags and output layout).
pub const BMAD_VERSION: &str = "6.12.0";

/// The folder of the workspace a planning turn writes to.
pub const OUTPUT_DIR: &str = "_bmad-output";

/// Names the task whose plan `_bmad-output/` holds.
const OWNER_FILE: &str = ".gaffer-task";

/// Records what gaffer installed and mended, so a workspace is set up once.
const STAMP_FILE: &str = "_bmad/.gaffer-installed";

/// The skills gaffer runs, each told to ask through OpenCode's `question` tool.
pub const PLANNING_SKILLS: [&str; 6] = [
    "bmad-spec",
    "bmad-prd",
    "bmad-architecture",
    "bmad-create-epics-and-stories",
    "bmad-party-mode",
    "bmad-build",
];

/// What every planning skill is told before it starts (BMAD's own per-skill customisation:
/// `_bmad/custom/<skill>.toml`, `activation_steps_prepend`).
const ASK_THROUGH_QUESTIONS: &str = "You run inside gaffer, without a terminal: nobody reads \
menus or replies to text. Whenever you need a decision or input from a person, call OpenCode's \
question tool with the options (the recommended one first, its label ending in \
\" (Recommended)\") instead of printing a menu or ending your turn. Never edit files outside \
_bmad-output/.";

/// Why the planner's files could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    /// No bmad-method package was given to gaffer.
    #[error(
        "planning needs the BMAD Method: install it once with `npm install --prefix ~/.gaffer/bmad \
         bmad-method@{BMAD_VERSION}` and pass --bmad ~/.gaffer/bmad/node_modules/bmad-method \
         (or set GAFFER_BMAD), or set plan.mode: none"
    )]
    NotInstalled,
    /// BMAD's installer failed.
    #[error("installing BMAD into {dir}: {why}")]
    Install {
        /// The workspace.
        dir: String,
        /// What went wrong (the installer's last lines).
        why: String,
    },
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PlannerError + '_ {
    move |source| PlannerError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The documents a planning turn left, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Path under `_bmad-output/` → text.
    pub docs: BTreeMap<String, String>,
    /// Files not taken (a bad name, not text, too big), each with why.
    pub skipped: Vec<String>,
}

/// The planner's workspace operations (a fake in the reconciler's unit tests).
pub trait Planner: Send + Sync + std::fmt::Debug {
    /// Installs and mends BMAD in the workspace `dir`; repeating it changes nothing.
    fn install(&self, dir: &Path) -> Result<(), PlannerError>;
    /// Makes `dir/_bmad-output/` hold `task`'s plan: when it held another task's, it is
    /// emptied first; then `docs` (the plan as the state repository has it, a person's edits
    /// included) are written over it.
    fn restore(
        &self,
        dir: &Path,
        task: &TaskName,
        docs: &BTreeMap<String, String>,
    ) -> Result<(), PlannerError>;
    /// The documents in `dir/_bmad-output/` (BMAD's hidden files, such as its `.memlog.md`,
    /// stay in the workspace).
    fn collect(&self, dir: &Path) -> Result<Collected, PlannerError>;
}

/// The real BMAD Method from an installed `bmad-method` package.
#[derive(Debug, Clone, Default)]
pub struct Bmad {
    /// The package directory (holding `tools/installer/bmad-cli.js`).
    pub package: Option<PathBuf>,
}

impl Bmad {
    /// BMAD from `package`, or from `GAFFER_BMAD` when not given.
    pub fn new(package: Option<PathBuf>) -> Self {
        let package = package.or_else(|| std::env::var_os("GAFFER_BMAD").map(PathBuf::from));
        Self { package }
    }

    fn installer(&self) -> Result<PathBuf, PlannerError> {
        let package = self.package.as_ref().ok_or(PlannerError::NotInstalled)?;
        let cli = package.join("tools/installer/bmad-cli.js");
        if cli.is_file() {
            Ok(cli)
        } else {
            Err(PlannerError::Install {
                dir: package.display().to_string(),
                why: format!(
                    "{} is missing: is this a bmad-method@{BMAD_VERSION} package directory?",
                    cli.display()
                ),
            })
        }
    }
}

impl Planner for Bmad {
    fn install(&self, dir: &Path) -> Result<(), PlannerError> {
        let stamp = dir.join(STAMP_FILE);
        let want = format!("bmad-method {BMAD_VERSION}; gaffer mends 1\n");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
            return Ok(());
        }
        let cli = self.installer()?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let out = Command::new("node")
            .arg(&cli)
            .args(["install", "--directory"])
            .arg(dir)
            .args([
                "--modules",
                "bmm",
                "--tools",
                "opencode",
                "--yes",
                "--user-name",
                "gaffer",
                "--no-shims",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PlannerError::Install {
                dir: dir.display().to_string(),
                why: format!("cannot run node: {e}"),
            })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            return Err(PlannerError::Install {
                dir: dir.display().to_string(),
                why: format!(
                    "{}: {}",
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                ),
            });
        }
        mend(dir)?;
        std::fs::write(&stamp, want).map_err(io(&stamp))?;
        Ok(())
    }

    fn restore(
        &self,
        dir: &Path,
        task: &TaskName,
        docs: &BTreeMap<String, String>,
    ) -> Result<(), PlannerError> {
        let out = dir.join(OUTPUT_DIR);
        let owner = out.join(OWNER_FILE);
        let ours = std::fs::read_to_string(&owner).ok().as_deref() == Some(task.as_str());
        if !ours && out.exists() {
            std::fs::remove_dir_all(&out).map_err(io(&out))?;
        }
        std::fs::create_dir_all(&out).map_err(io(&out))?;
        for (path, text) in docs {
            // Paths come from the state repository: checked again before they become paths.
            if check_doc_path(path).is_err() {
                continue;
            }
            let file = out.join(path);
            if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&file, text).map_err(io(&file))?;
        }
        std::fs::write(&owner, task.as_str()).map_err(io(&owner))?;
        Ok(())
    }

    fn collect(&self, dir: &Path) -> Result<Collected, PlannerError> {
        let out = dir.join(OUTPUT_DIR);
        let mut got = Collected::default();
        if out.is_dir() {
            walk(&out, "", &mut got)?;
        }
        Ok(got)
    }
}

/// Reads the documents under `dir` (`rel` is its path under `_bmad-output/`).
fn walk(dir: &Path, rel: &str, got: &mut Collected) -> Result<(), PlannerError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        // Never follows a link: a planner could point one at gaffer's secrets.
        let kind = e.file_type().map_err(io(&e.path()))?;
        if kind.is_dir() {
            walk(&e.path(), &path, got)?;
            continue;
        }
        if !kind.is_file() {
            got.skipped.push(format!("{path}: not a regular file"));
            continue;
        }
        if let Err(why) = check_doc_path(&path) {
            got.skipped.push(why);
            continue;
        }
        if got.docs.len() >= MAX_DOCUMENTS {
            got.skipped.push(format!(
                "{path}: the plan has {MAX_DOCUMENTS} documents already"
            ));
            continue;
        }
        let bytes = std::fs::read(e.path()).map_err(io(&e.path()))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            got.skipped.push(format!(
                "{path}: {} bytes, more than {MAX_DOCUMENT_BYTES}",
                bytes.len()
            ));
            continue;
        }
        match String::from_utf8(bytes) {
            Ok(text) => {
                got.docs.insert(path, text);
            }
            Err(_) => got.skipped.push(format!("{path}: not UTF-8 text")),
        }
    }
    Ok(())
}

/// Mends what BMAD 6.12.0 installs for OpenCode: its command bodies (`@skills/<id>`, which
/// OpenCode reads as a missing file) point at the skill's file, and every planning skill is
/// told to ask through the `question` tool.
fn mend(dir: &Path) -> Result<(), PlannerError> {
    let commands = dir.join(".opencode/commands");
    if let Ok(entries) = std::fs::read_dir(&commands) {
        for e in entries.filter_map(Result::ok) {
            let file = e.path();
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let mended: Vec<String> = text
                .lines()
                .map(|l| match l.trim().strip_prefix("@skills/") {
                    Some(id) if !id.contains(['/', ' ']) => {
                        format!("@.agents/skills/{id}/SKILL.md")
                    }
                    _ => l.to_string(),
                })
                .collect();
            let mended = mended.join("\n") + if text.ends_with('\n') { "\n" } else { "" };
            if mended != text {
                std::fs::write(&file, mended).map_err(io(&file))?;
            }
        }
    }
    let custom = dir.join("_bmad/custom");
    std::fs::create_dir_all(&custom).map_err(io(&custom))?;
    for skill in PLANNING_SKILLS {
        let file = custom.join(format!("{skill}.toml"));
        let text = format!(
            "# Written by gaffer (docs/planning.md); personal overrides go in {skill}.user.toml.\n\
             [workflow]\nactivation_steps_prepend = [{}]\n",
            toml_string(ASK_THROUGH_QUESTIONS)
        );
        std::fs::write(&file, text).map_err(io(&file))?;
    }
    Ok(())
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(s: &str) -> TaskName {
        TaskName::new(s).unwrap()
    }

    #[test]
    fn output_is_restored_per_task_and_collected_without_hidden_files_or_links() {
        let tmp = tempfile::tempdir().unwrap();
        let bmad = Bmad::default();
        let mut docs = BTreeMap::new();
        docs.insert("specs/spec-a/SPEC.md".to_string(), "# A\n".to_string());
        bmad.restore(tmp.path(), &task("a"), &docs).unwrap();
        let out = tmp.path().join(OUTPUT_DIR);
        std::fs::write(out.join("specs/spec-a/.memlog.md"), "log").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", out.join("secret.md")).unwrap();
        std::fs::write(out.join("bad name.md"), "x").unwrap();
        let got = bmad.collect(tmp.path()).unwrap();
        assert_eq!(got.docs, docs);
        assert_eq!(got.skipped.len(), 2, "{:?}", got.skipped);
        // The same task again keeps BMAD's own memory; another task starts from its own plan.
        bmad.restore(tmp.path(), &task("a"), &docs).unwrap();
        assert!(out.join("specs/spec-a/.memlog.md").exists());
        bmad.restore(tmp.path(), &task("b"), &BTreeMap::new())
            .unwrap();
        assert!(!out.join("specs").exists());
        assert_eq!(bmad.collect(tmp.path()).unwrap(), Collected::default());
    }

    #[test]
    fn without_a_package_install_says_how_to_get_one() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Bmad { package: None }.install(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("--bmad"), "{err}");
        let err = Bmad {
            package: Some(tmp.path().into()),
        }
        .install(tmp.path())
        .unwrap_err();
        assert!(err.to_string().contains("bmad-cli.js is missing"), "{err}");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a \"b\" \\c\n"), "\"a \\\"b\\\" \\\\c\\n\"");
    }
}
