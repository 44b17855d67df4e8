//! `docs/schemas/companion-api.schema.json` is what the API's types
//! generate (after changing one, run
//! `MINIMODEL_WRITE_SCHEMAS=1 cargo test -p minimodel-companion --test api_schema_file`
//! and check the diff in), and it tells good bodies from bad ones.

mod support;

use serde_json::json;

#[test]
fn the_checked_in_schema_equals_the_generated_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/schemas")
        .join(minimodel_companion::schema::FILE_NAME);
    let text = minimodel_companion::schema::generate();
    if std::env::var_os("MINIMODEL_WRITE_SCHEMAS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "{} differs from the types; run MINIMODEL_WRITE_SCHEMAS=1 cargo test -p minimodel-companion --test api_schema_file and check the diff in",
        path.display()
    );
}

#[test]
fn the_schema_refuses_what_the_companion_refuses() {
    let mut schema = support::ApiSchema::load();
    schema.check(
        "AddShare",
        &json!({"manifest_path": "/m", "file": "/f.slm", "consent": {"serve": true}}),
    );
    schema.check(
        "ErrorBody",
        &json!({"kind": "unauthorized", "error": "no", "hint": null, "needs": []}),
    );
    let refused = |schema: &mut support::ApiSchema, def: &str, value: serde_json::Value| {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| schema.check(def, &value)));
        assert!(outcome.is_err(), "{def} accepted {value}");
    };
    // An unknown field, a missing file, consent that is not a yes or no.
    refused(&mut schema, "AddShare", json!({"file": "/f", "bogus": 1}));
    refused(&mut schema, "AddShare", json!({"manifest_path": "/m"}));
    refused(
        &mut schema,
        "AddShare",
        json!({"file": "/f", "consent": {"serve": "yes"}}),
    );
    refused(&mut schema, "ErrorBody", json!({"kind": "x"}));
    refused(
        &mut schema,
        "ApiEvent",
        json!({"event": "nonsense", "data": {}}),
    );
}
