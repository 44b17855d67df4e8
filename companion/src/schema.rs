//! The JSON Schema (draft 2020-12) of the API's bodies,
//! `docs/schemas/companion-api.schema.json`, generated from the types of
//! [`crate::view`] (with the `schema` feature, which the tests turn on).
//!
//! One file, every body under `$defs` by its type's name: what a client
//! sends (`AddShare`, `AddDownload`, `SetLimits`, `Caps`, `AddFollow`) as
//! the companion accepts it, what it answers (`LibraryView`, `ItemView`,
//! `Preview`, `LimitsView`, `LogPage`, `Removed`, `ActivityView`,
//! `RatesView`, `FollowsView`, `FollowView`, `ErrorBody`) as it writes
//! it, and
//! each server-sent event as `ApiEvent` (`event` its name, `data` its
//! JSON). The tests check that the file equals what the types generate
//! and that real answers match it.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::library::Caps;
use crate::translog::LogEntry;
use crate::view::{
    ActivityView, AddDownload, AddFollow, AddShare, ApiEvent, ErrorBody, FollowView, FollowsView,
    ItemView, LibraryView, LimitsView, LogPage, Preview, RatesView, Removed, SetLimits,
};

/// The file's name in `docs/schemas/`.
pub const FILE_NAME: &str = "companion-api.schema.json";

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

/// The schema file's text.
pub fn generate() -> String {
    let mut answers = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    add::<LibraryView>(&mut answers);
    add::<ItemView>(&mut answers);
    add::<Preview>(&mut answers);
    add::<LimitsView>(&mut answers);
    add::<LogPage>(&mut answers);
    add::<LogEntry>(&mut answers);
    add::<Removed>(&mut answers);
    add::<ErrorBody>(&mut answers);
    add::<ActivityView>(&mut answers);
    add::<RatesView>(&mut answers);
    add::<ApiEvent>(&mut answers);
    add::<FollowsView>(&mut answers);
    add::<FollowView>(&mut answers);
    let mut requests = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    add::<AddShare>(&mut requests);
    add::<AddDownload>(&mut requests);
    add::<SetLimits>(&mut requests);
    add::<Caps>(&mut requests);
    add::<AddFollow>(&mut requests);
    let mut defs: Map<String, Value> = answers.take_definitions(true).into_iter().collect();
    // A type in both (`Caps`, `Consent`) is described as requests may
    // send it; every answer carries all its fields, so it matches too.
    defs.extend(requests.take_definitions(true));
    let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "minimodel companion API v1",
        "description": "The bodies of the companion's local HTTP API (docs/companion.md): each under $defs by name. Requests: AddShare (POST /api/v1/shares and /shares/preview), AddDownload (POST /api/v1/downloads and /downloads/preview), SetLimits (PUT /api/v1/limits), Caps (PUT /api/v1/items/{id}/caps), AddFollow (POST /api/v1/follows). Answers: LibraryView, ItemView, Preview, LimitsView, LogPage, Removed, ActivityView (GET /api/v1/items/{id}/activity), RatesView (GET /api/v1/rates), FollowsView (GET /api/v1/follows), FollowView, and ErrorBody for every refusal. ApiEvent: one server-sent event of GET /api/v1/events.",
        "$defs": Value::Object(sorted.into_iter().collect()),
    });
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
