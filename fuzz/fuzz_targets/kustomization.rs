#![no_main]
//! A builder's kustomization (untrusted: the builder writes the overlay), through the check
//! of what an overlay may reach (`lab::overlay::check`).
//!
//! Properties: any text is read without panicking; every refusal names the file (and, when
//! about an entry, its line and column).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let ws = tmp.path().join("repos");
    let app = ws.join("app");
    std::fs::create_dir_all(app.join("base")).expect("dirs");
    std::fs::write(app.join("base/kustomization.yaml"), "resources: []\n").expect("base");
    std::fs::write(app.join("kustomization.yaml"), data).expect("the kustomization");
    if let Err(e) = gaffer::lab::overlay::check(&ws, &app) {
        assert!(
            e.starts_with("app/kustomization.yaml") || e.starts_with("app/base/kustomization.yaml"),
            "{e}"
        );
    }
});
