//! What a kustomize overlay may reach: only files of the workspace. Every path a
//! kustomization names (resources, components, bases, crds, patches, generator files and
//! env files) is resolved — symlinks too — and must stay inside the workspace, recursively
//! through the kustomizations it includes; remote resources (URLs, git) are refused, since
//! a lab deploys the work under review and nothing else. kustomize itself lets a resource
//! directory lie anywhere on the machine (its load restrictor covers files only).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::state::yaml::{self, Located};

/// The names kustomize reads a kustomization from.
const FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Kustomization {
    resources: Vec<Located<String>>,
    components: Vec<Located<String>>,
    bases: Vec<Located<String>>,
    crds: Vec<Located<String>>,
    patches_strategic_merge: Vec<Located<String>>,
    patches: Vec<PatchRef>,
    patches_json6902: Vec<PatchRef>,
    config_map_generator: Vec<Generator>,
    secret_generator: Vec<Generator>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PatchRef {
    path: Option<Located<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Generator {
    files: Vec<Located<String>>,
    envs: Vec<Located<String>>,
    env: Option<Located<String>>,
}

/// Checks the overlay at `overlay` (a directory with a kustomization) against the
/// workspace `root`; the error is `file:line:col: why`, the file shown relative to `root`.
pub fn check(root: &Path, overlay: &Path) -> Result<(), String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let mut seen = BTreeSet::new();
    walk(&root, overlay, &mut seen)
}

fn walk(root: &Path, dir: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<(), String> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(()); // kustomize says what is missing
    };
    if !seen.insert(dir.clone()) {
        return Ok(());
    }
    let Some(file) = FILES.iter().map(|f| dir.join(f)).find(|f| f.is_file()) else {
        return Ok(());
    };
    let shown = file
        .strip_prefix(root)
        .unwrap_or(&file)
        .display()
        .to_string();
    let bytes = std::fs::read(&file).map_err(|e| format!("{shown}: {e}"))?;
    let k: Kustomization = yaml::parse(&bytes).map_err(|e| match (e.line, e.column) {
        (Some(_), Some(_)) => format!("{shown}:{e}"),
        _ => format!("{shown}: {e}"),
    })?;
    let mut dirs = Vec::new();
    let mut entry = |field: &str, p: &Located<String>, may_be_dir: bool| -> Result<(), String> {
        let at = |why: String| {
            format!(
                "{shown}:{}:{}: {field} entry {:?} {why}",
                p.line, p.column, p.value
            )
        };
        let value = p.value.trim();
        if value.contains("://") || value.starts_with("git@") || value.starts_with("github.com/") {
            return Err(at(
                "is remote: a lab deploys what is in the workspace, nothing fetched".into(),
            ));
        }
        let resolved = resolve(&dir.join(value));
        if !resolved.starts_with(root) {
            return Err(at("points outside the workspace".into()));
        }
        if may_be_dir && resolved.is_dir() {
            dirs.push(resolved);
        }
        Ok(())
    };
    for r in &k.resources {
        entry("resources", r, true)?;
    }
    for r in &k.components {
        entry("components", r, true)?;
    }
    for r in &k.bases {
        entry("bases", r, true)?;
    }
    for r in &k.crds {
        entry("crds", r, false)?;
    }
    for p in &k.patches_strategic_merge {
        // An inline patch is YAML, not a path.
        if !p.value.contains('\n') {
            entry("patchesStrategicMerge", p, false)?;
        }
    }
    for p in k.patches.iter().chain(&k.patches_json6902) {
        if let Some(path) = &p.path {
            entry("patches", path, false)?;
        }
    }
    for g in k.config_map_generator.iter().chain(&k.secret_generator) {
        for f in &g.files {
            // `key=path` names the key; the file is after the `=`.
            let path = match f.value.split_once('=') {
                Some((_, p)) => Located {
                    value: p.to_string(),
                    line: f.line,
                    column: f.column,
                },
                None => f.clone(),
            };
            entry("files", &path, false)?;
        }
        for e in g.envs.iter().chain(&g.env) {
            entry("envs", e, false)?;
        }
    }
    for d in dirs {
        walk(root, &d, seen)?;
    }
    Ok(())
}

/// The path with symlinks resolved where it exists, and `.`/`..` folded lexically beyond.
fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (p, c) in files {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
    }

    #[test]
    fn paths_inside_the_workspace_pass_and_any_way_out_is_located() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("repos");
        write(
            &ws,
            &[
                (
                    "app/deploy/kustomization.yaml",
                    "resources:\n  - base\n  - svc.yaml\nconfigMapGenerator:\n  - name: c\n    files:\n      - main.py=../src/main.py\n",
                ),
                (
                    "app/deploy/base/kustomization.yaml",
                    "resources: [dep.yaml]\n",
                ),
                ("app/src/main.py", "print()\n"),
            ],
        );
        write(
            tmp.path(),
            &[("outside/kustomization.yaml", "resources: []\n")],
        );
        check(&ws, &ws.join("app/deploy")).unwrap();

        let cases = [
            (
                "resources:\n  - base\n  - ../../../outside\n",
                "app/deploy/kustomization.yaml:3:5: resources entry \"../../../outside\" points outside the workspace",
            ),
            (
                "configMapGenerator:\n  - name: c\n    files: [k=/etc/passwd]\n",
                "app/deploy/kustomization.yaml:3:13: files entry \"/etc/passwd\" points outside the workspace",
            ),
            (
                "resources:\n  - https://github.com/x/y//deploy?ref=main\n",
                "is remote",
            ),
        ];
        for (text, want) in cases {
            write(&ws, &[("app/deploy/kustomization.yaml", text)]);
            let e = check(&ws, &ws.join("app/deploy")).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        // Through an included kustomization, and through a symlink.
        write(
            &ws,
            &[("app/deploy/kustomization.yaml", "resources: [base]\n")],
        );
        write(
            &ws,
            &[(
                "app/deploy/base/kustomization.yaml",
                "patches:\n  - path: ../../../../x.yaml\n",
            )],
        );
        let e = check(&ws, &ws.join("app/deploy")).unwrap_err();
        assert!(
            e.starts_with("app/deploy/base/kustomization.yaml:2:"),
            "{e}"
        );
        write(
            &ws,
            &[("app/deploy/base/kustomization.yaml", "resources: [link]\n")],
        );
        std::os::unix::fs::symlink(tmp.path().join("outside"), ws.join("app/deploy/base/link"))
            .unwrap();
        let e = check(&ws, &ws.join("app/deploy")).unwrap_err();
        assert!(e.contains("\"link\" points outside the workspace"), "{e}");
    }
}
