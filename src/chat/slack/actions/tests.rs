use super::*;

#[test]
fn the_start_form_filters_projects_by_category_and_presets() {
    let projects: Vec<ProjectRef> = ["ai-dev/proj-api-service", "ai-dev/web", "ops/dns"]
        .iter()
        .map(|p| ProjectRef::parse(p).unwrap())
        .collect();
    let all = start_view(&projects, "", "C1");
    assert_eq!(
        all["blocks"][1]["element"]["options"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let ai = start_view(&projects, "ai-dev/web", "C1");
    let opts = ai["blocks"][1]["element"]["options"].as_array().unwrap();
    assert_eq!(opts.len(), 2);
    assert_eq!(
        ai["blocks"][0]["element"]["initial_option"]["value"],
        "ai-dev"
    );
    assert_eq!(
        ai["blocks"][1]["element"]["initial_option"]["value"],
        "ai-dev/web"
    );
    insta::assert_json_snapshot!("start_form", ai);
    // The typed client accepts it.
    let _: slack_morphism::prelude::SlackView = serde_json::from_value(ai).unwrap();
}

#[test]
fn the_answer_forms_take_free_text_and_for_a_change_the_options() {
    let q: Question = crate::state::yaml::parse(
        b"text: How long should tokens live?\noptions: [{label: 15 minutes (Recommended)}, {label: 1 hour}]\ncustom: true\nrecommended: 15 minutes (Recommended)\naskedAt: 2026-11-25T10:00:00Z\nstate: defaulted\n",
    )
    .unwrap();
    let t = TaskRef::parse("ai-dev/api/jwt").unwrap();
    let qid = Qid::new("q-002").unwrap();
    let m = MessageRef {
        channel: "C1".into(),
        ts: "1700000000.000007".into(),
    };
    let other = answer_view(&t, &qid, &q, false, &m);
    insta::assert_json_snapshot!("answer_form_other", other);
    let change = answer_view(&t, &qid, &q, true, &m);
    insta::assert_json_snapshot!("answer_form_change", change);
    for v in [other, change] {
        let meta: Value = serde_json::from_str(v["private_metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta["task"], "ai-dev/api/jwt");
        assert_eq!(meta["ts"], "1700000000.000007");
        let _: slack_morphism::prelude::SlackView = serde_json::from_value(v).unwrap();
    }
}
