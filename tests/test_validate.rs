//! `gaffer validate` on the example repository and on every invalid fixture.

use std::path::Path;

use crate::common::{gaffer, root, run};

fn validate(dir: &Path, json: bool) -> (Option<i32>, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = gaffer(home.path());
    cmd.arg("validate").arg(dir);
    if json {
        cmd.args(["--output", "json"]);
    }
    let r = run(&mut cmd);
    assert!(r.stderr.is_empty(), "unexpected stderr: {}", r.stderr);
    (r.code, r.stdout)
}

#[test]
fn example_state_repo_is_valid() {
    let (code, out) = validate(&root().join("example-state-repo"), false);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("30 files checked"), "{out}");
}

#[test]
fn json_output_lists_located_problems() {
    let (code, out) = validate(&root().join("tests/fixtures/invalid/duplicate-key"), true);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    let p = &v["problems"][0];
    assert_eq!(p["path"], "projects/ai-dev/api/tasks/t1/task.yaml");
    assert_eq!(p["line"], 3);
    assert_eq!(p["column"], 1);
    assert_eq!(p["message"], "duplicate mapping key: title");
}

fn check_fixture(name: &str, dir: &Path) {
    let (code, out) = validate(dir, false);
    assert_eq!(code, Some(1), "{name} must be invalid:\n{out}");
    for line in out.lines().filter(|l| !l.contains("files checked")) {
        assert!(
            line.starts_with("projects/") || line.starts_with("gaffer.yaml"),
            "{name}: every problem names its file: {line}"
        );
    }
    insta::assert_snapshot!(format!("invalid_{name}"), out);
}

macro_rules! fixture_tests {
    ($($test:ident => $dir:literal,)*) => {$(
        #[test]
        fn $test() {
            check_fixture($dir, &root().join("tests/fixtures/invalid").join($dir));
        }
    )*};
}

fixture_tests! {
    invalid_malformed_yaml => "malformed-yaml",
    invalid_wrong_types => "wrong-types",
    invalid_unknown_field => "unknown-field",
    invalid_duplicate_key => "duplicate-key",
    invalid_yaml_bomb => "yaml-bomb",
    invalid_bad_names => "bad-names",
    invalid_symlinks => "symlinks",
    invalid_non_utf8 => "non-utf8",
    invalid_cross_file => "cross-file",
    invalid_bad_settings => "bad-settings",
}

#[test]
fn invalid_big_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/invalid/big-file");
    copy_dir(&src, tmp.path());
    let task = tmp.path().join("projects/ai-dev/api/tasks/huge");
    std::fs::create_dir_all(&task).unwrap();
    let mut body = String::from("title: huge\ndescription: |\n");
    while body.len() < 5 * 1024 * 1024 {
        body.push_str("  lorem ipsum dolor sit amet, consectetur adipiscing elit\n");
    }
    std::fs::write(task.join("task.yaml"), body).unwrap();
    check_fixture("big-file", tmp.path());
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let r = run(gaffer(home.path()).args(["validate", "/nonexistent/state"]));
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("is not a directory"), "{}", r.stderr);
    let r = run(gaffer(home.path()).args(["validate", "--output", "xml"]));
    assert_eq!(r.code, Some(2));
}

#[test]
fn a_bad_file_does_not_hide_the_good_ones() {
    let (files, _) =
        gaffer::validate::load_dir(&root().join("tests/fixtures/invalid/cross-file")).unwrap();
    let snap = gaffer::state::snapshot::Snapshot::from_files(files);
    let t = gaffer::names::TaskRef::parse("ai-dev/api/t1").unwrap();
    let entry = snap.task(&t).expect("t1 loaded despite its neighbours");
    assert_eq!(entry.spec.as_ref().unwrap().title, "t1");
    assert_eq!(entry.questions.len(), 2);
    assert_eq!(entry.answers.len(), 3);
}

#[test]
fn incremental_updates_match_a_full_load() {
    use gaffer::state::snapshot::{RawContent, Snapshot};
    let (files, _) = gaffer::validate::load_dir(&root().join("example-state-repo")).unwrap();
    let full = Snapshot::from_files(files.clone());
    // Start empty, add everything, then remove and re-add one task's files.
    let mut inc = Snapshot::default();
    for (p, c) in &files {
        inc.upsert(p, c);
    }
    let task_files: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.contains("/tasks/jwt-auth/"))
        .collect();
    for (p, _) in &task_files {
        inc.remove(p);
    }
    let t = gaffer::names::TaskRef::parse("ai-dev/proj-api-service/jwt-auth").unwrap();
    assert!(
        inc.task(&t).is_none(),
        "removing every file removes the task"
    );
    assert!(!inc.all_problems().is_empty() || inc.task(&t).is_none());
    for (p, c) in &task_files {
        inc.upsert(p, c);
    }
    assert_eq!(inc.all_problems(), full.all_problems());
    assert_eq!(
        format!("{:?}", inc.projects),
        format!("{:?}", full.projects),
        "same parsed state either way"
    );
    // Breaking one file reports it and leaves the rest loaded; fixing it clears the problem.
    let path = "projects/ai-dev/proj-api-service/tasks/jwt-auth/task.yaml";
    inc.upsert(path, &RawContent::Blob(b"title: [".to_vec()));
    assert_eq!(inc.all_problems().len(), 1, "{:?}", inc.all_problems());
    assert!(inc.task(&t).unwrap().spec.is_none());
    assert!(!inc.task(&t).unwrap().questions.is_empty());
    inc.upsert(path, &RawContent::Blob(b"title: fixed\n".to_vec()));
    assert!(inc.all_problems().is_empty());
}

#[test]
fn a_malformed_signing_key_is_located_and_accept_unsigned_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gaffer.yaml"),
        "domain: lab.example.com\n\
         authors:\n  answers: [you@example.com]\n  signing_keys:\n    \
         - \"you@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\"\n    \
         - \"you@example.com not-a-key\"\n",
    )
    .unwrap();
    let (code, out) = validate(dir.path(), false);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("gaffer.yaml:6:7: authors.signing_keys: not an allowed_signers line"),
        "{out}"
    );
    assert!(
        out.contains("gaffer.yaml:5:7: authors.signing_keys: the ssh-ed25519 key is not base64"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("gaffer.yaml"),
        "domain: lab.example.com\nauthors: {answers: [you@example.com], accept_unsigned: true}\n",
    )
    .unwrap();
    let (code, out) = validate(dir.path(), false);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("gaffer.yaml: warning: authors.accept_unsigned: true"),
        "{out}"
    );
}
