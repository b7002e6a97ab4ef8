//! End-to-end: `examples/cqrs` under a real `gust up`, driven over HTTP like
//! a client: commands change the write model, the change-feed projector
//! updates the read model, queries see the result once it has caught up.

mod common;
mod engine_probe;

use std::time::{Duration, Instant};

use common::*;
use engine_probe::{NatsCleanup, PgCleanup, psql_rows};
use serde_json::{Value, json};

/// The example's own manifest, its sources pointing back at the example's
/// crates.
fn manifest() -> String {
    let example = repo().join("examples/cqrs");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    manifest.replace("source = \"functions/", &functions)
}

/// The example's manifest in a temporary app folder.
fn app() -> TestApp {
    TestApp::new(&manifest())
}

fn command(url: &str, method: &str, path: &str, body: &Value) -> Reply {
    send(
        method,
        &format!("{url}/api/commands/contacts{path}"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Polls the read model until contact `id` is at `version` or later.
fn read_at(url: &str, id: &str, version: u64) -> Value {
    let mut last = None;
    let caught_up = eventually(Duration::from_secs(15), || {
        let r = get(&format!("{url}/api/queries/contacts/{id}"), &[]);
        let done = r.status == 200 && r.json()["version"].as_u64() >= Some(version);
        last = Some(r);
        done
    });
    let last = last.unwrap();
    assert!(
        caught_up,
        "read model never reached version {version}: {last:?}"
    );
    assert_eq!(
        last.header("etag"),
        Some(format!("\"{}\"", last.json()["version"]).as_str())
    );
    last.json()
}

fn list(url: &str, query: &str) -> Value {
    let r = get(&format!("{url}/api/queries/contacts{query}"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn commands_change_the_write_model_and_queries_see_the_projection() {
    let started = Instant::now();
    let app = app();
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    eprintln!("gust up ready after {:?}", started.elapsed());
    scenario(&host.url);
    eprintln!("done after {:?}", started.elapsed());
}

/// The ids of the two contacts the scenario creates.
struct Contacts {
    /// Created, updated twice, deleted.
    ada: String,
    /// Created; still there.
    grace: String,
}

/// Drives the example through `url`: validation, creates, lists, updates,
/// a stale update, removing the address, deleting Ada.
fn scenario(url: &str) -> Contacts {
    // Commands validate: malformed JSON, invalid fields, unknown contacts.
    let r = send(
        "POST",
        &format!("{url}/api/commands/contacts"),
        &[],
        b"{not json",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.json()["error"].as_str().is_some());
    let r = command(
        url,
        "POST",
        "",
        &json!({ "name": " ", "email": "nope", "phone": "call me",
                 "address": { "street": "1 Main St", "country": "France" } }),
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(
        r.json()["fields"],
        json!({
            "name": "is required",
            "email": "is not a valid email address",
            "phone": "must be 6 to 15 digits, optionally with + - ( ) . and spaces",
            "address.city": "is required",
            "address.country": "must be a two-letter ISO 3166 code such as GB",
        })
    );
    let r = command(url, "POST", "", &json!({ "name": "x", "mail": "x@y.z" }));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("unknown field `mail`"), "{r:?}");
    let ghost = "/c-0000000000000000";
    let valid = json!({ "name": "Nobody", "email": "no@body.org" });
    assert_eq!(command(url, "PUT", ghost, &valid).status, 404);
    assert_eq!(command(url, "DELETE", ghost, &json!(null)).status, 404);
    let r = get(&format!("{url}/api/queries/contacts{ghost}"), &[]);
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"], "no contact `c-0000000000000000`");

    // Create: header + address in the write model, one flat view to read.
    let r = command(
        url,
        "POST",
        "",
        &json!({
            "name": "Ada Lovelace", "email": "Ada@Example.com", "phone": "+44 20 7946 0000",
            "address": { "street": "12 St James's Square", "city": "London",
                         "postal_code": "SW1Y 4JH", "country": "gb" }
        }),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let ada = r.json()["id"].as_str().unwrap().to_string();
    let version = r.json()["version"].as_u64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/queries/contacts/{ada}").as_str())
    );
    let view = read_at(url, &ada, version);
    let t0 = Instant::now();
    assert_eq!(view["name"], "Ada Lovelace");
    assert_eq!(view["email"], "ada@example.com");
    assert_eq!(view["phone"], "+44 20 7946 0000");
    assert_eq!(view["street"], "12 St James's Square");
    assert_eq!(view["city"], "London");
    assert_eq!(view["postal_code"], "SW1Y 4JH");
    assert_eq!(view["country"], "GB");
    assert_eq!(view["address"], "12 St James's Square, SW1Y 4JH London, GB");
    assert_eq!(view["created_at"], view["updated_at"]);
    let ada_created = view["created_at"].clone();

    let r = command(
        url,
        "POST",
        "",
        &json!({ "name": "Grace Hopper", "email": "grace@navy.mil" }),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let grace = r.json()["id"].as_str().unwrap().to_string();
    let view = read_at(url, &grace, r.json()["version"].as_u64().unwrap());
    assert_eq!(view["city"], Value::Null);
    assert_eq!(view["address"], Value::Null);
    eprintln!("two creates visible after {:?}", t0.elapsed());

    // Lists, filters and paging read the same read model.
    let all = list(url, "");
    let mut expected = vec!["Ada Lovelace".to_string(), "Grace Hopper".to_string()];
    if ada > grace {
        expected.reverse();
    }
    assert_eq!(names(&all), expected);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(names(&list(url, "?city=LONDON")), ["Ada Lovelace"]);
    assert_eq!(names(&list(url, "?q=navy")), ["Grace Hopper"]);
    let first = list(url, "?limit=1");
    assert_eq!(names(&first), expected[..1]);
    let cursor = first["next"].as_str().unwrap().to_string();
    assert_eq!(
        names(&list(url, &format!("?limit=1&after={cursor}"))),
        expected[1..]
    );
    let r = get(&format!("{url}/api/queries/contacts?limit=0"), &[]);
    assert_eq!(r.status, 400, "{r:?}");

    // Update: Ada moves; the header keeps its creation time.
    let r = command(
        url,
        "PUT",
        &format!("/{ada}"),
        &json!({
            "name": "Ada King", "email": "ada@example.com",
            "address": { "street": "Ockham Park", "city": "Ockham", "country": "GB" }
        }),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v2 = r.json()["version"].as_u64().unwrap();
    assert!(v2 > version);
    let moved = read_at(url, &ada, v2);
    assert_eq!(moved["name"], "Ada King");
    assert_eq!(moved["phone"], Value::Null);
    assert_eq!(moved["city"], "Ockham");
    assert_eq!(moved["postal_code"], Value::Null);
    assert_eq!(moved["address"], "Ockham Park, Ockham, GB");
    assert_eq!(moved["created_at"], ada_created);

    // Optimistic concurrency: an old version is refused.
    let r = send(
        "PUT",
        &format!("{url}/api/commands/contacts/{ada}"),
        &[("if-match", &format!("\"{version}\""))],
        valid.to_string().as_bytes(),
    );
    assert_eq!(r.status, 412, "{r:?}");
    assert_eq!(read_at(url, &ada, v2)["name"], "Ada King");

    // Removing the child row clears the flattened address.
    let r = send(
        "PUT",
        &format!("{url}/api/commands/contacts/{ada}"),
        &[("if-match", &format!("\"{v2}\""))],
        json!({ "name": "Ada King", "email": "ada@example.com" })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v3 = r.json()["version"].as_u64().unwrap();
    let view = read_at(url, &ada, v3);
    assert_eq!(view["street"], Value::Null);
    assert_eq!(view["address"], Value::Null);

    // Delete: the read entity disappears.
    let r = command(url, "DELETE", &format!("/{ada}"), &json!(null));
    assert_eq!(r.status, 204, "{r:?}");
    let gone = eventually(Duration::from_secs(15), || {
        get(&format!("{url}/api/queries/contacts/{ada}"), &[]).status == 404
    });
    assert!(gone, "the deleted contact is still readable");
    assert_eq!(names(&list(url, "")), ["Grace Hopper"]);
    assert_eq!(
        command(url, "DELETE", &format!("/{ada}"), &json!(null)).status,
        404
    );
    Contacts { ada, grace }
}

/// The same scenario with the tables and their change feed on PostgreSQL
/// (`--postgres`); then the write model, the read model and the change
/// feed are read back with `psql` from the app's schema.
#[test]
fn on_postgres_the_models_and_the_change_feed_are_rows() {
    let started = Instant::now();
    let name = engine_probe::unique_app("cqrs");
    let app = TestApp::new(&engine_probe::rename_app(&manifest(), &name));
    let pg = PgCleanup::new(&name);
    // Nothing of this app may reach NATS (no --nats given).
    let nats = NatsCleanup::new(&name);
    let mut host = up(
        app.path(),
        &[
            "--quiet",
            "--no-watch",
            "--postgres",
            engine_probe::POSTGRES,
        ],
    );
    eprintln!("gust up ({name}) ready after {:?}", started.elapsed());
    let Contacts { ada, grace } = scenario(&host.url);
    assert_eq!(host.stop(), Some(0), "{}", host.stderr());
    let s = &pg.schema;
    assert_eq!(
        pg.schemas(),
        std::slice::from_ref(s),
        "only the app's schema"
    );
    assert!(nats.streams().is_empty(), "{:?}", nats.streams());

    // Write model: Grace's header only (Ada and her address are deleted).
    let rows = psql_rows(&format!(
        "SELECT key, doc->>'id', doc->>'name', doc->>'email', version, \
         convert_from(body, 'UTF8')::jsonb = doc \
         FROM {s}.table_docs WHERE tbl = 'contacts' ORDER BY key"
    ));
    assert_eq!(
        rows,
        [[
            format!("contact/{grace}"),
            grace.clone(),
            "Grace Hopper".into(),
            "grace@navy.mil".into(),
            "3".into(),
            "t".into(),
        ]]
    );

    // Read model: Grace's flat view.
    let rows = psql_rows(&format!(
        "SELECT key, doc->>'name', doc->>'email', doc->>'version', \
         doc->'city' = 'null'::jsonb FROM {s}.table_docs WHERE tbl = 'contact-views'"
    ));
    assert_eq!(
        rows,
        [[
            grace.clone(),
            "Grace Hopper".into(),
            "grace@navy.mil".into(),
            "3".into(),
            "t".into(),
        ]]
    );
    // The change feed of the write model: every write of the scenario, in
    // order, numbered 1.. without gaps; deletes carry no body.
    let changes = psql_rows(&format!(
        "SELECT seq, key, deleted, body IS NULL, \
         coalesce(convert_from(body, 'UTF8')::jsonb->>'name', \
                  convert_from(body, 'UTF8')::jsonb->>'city', '') \
         FROM {s}.table_changes WHERE tbl = 'contacts' ORDER BY seq"
    ));
    let expected: Vec<[String; 5]> = [
        (format!("address/{ada}"), false, "London"),
        (format!("contact/{ada}"), false, "Ada Lovelace"),
        (format!("contact/{grace}"), false, "Grace Hopper"),
        (format!("address/{ada}"), false, "Ockham"),
        (format!("contact/{ada}"), false, "Ada King"),
        (format!("address/{ada}"), true, ""),
        (format!("contact/{ada}"), false, "Ada King"),
        (format!("contact/{ada}"), true, ""),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (key, deleted, what))| {
        let flag = if deleted { "t" } else { "f" };
        [
            (i + 1).to_string(),
            key,
            flag.into(),
            flag.into(),
            what.into(),
        ]
    })
    .collect();
    assert_eq!(changes, expected);

    // The change feed of the read model: dense, Ada's views ending in her
    // delete, Grace's one view.
    let changes = psql_rows(&format!(
        "SELECT seq, key, deleted, coalesce(convert_from(body, 'UTF8')::jsonb->>'name', '') \
         FROM {s}.table_changes WHERE tbl = 'contact-views' ORDER BY seq"
    ));
    for (i, row) in changes.iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "{changes:?}");
    }
    let of = |id: &str| -> Vec<(String, String)> {
        changes
            .iter()
            .filter(|r| r[1] == id)
            .map(|r| (r[2].clone(), r[3].clone()))
            .collect()
    };
    let ada_views = of(&ada);
    assert_eq!(
        ada_views.first(),
        Some(&("f".into(), "Ada Lovelace".into())),
        "{changes:?}"
    );
    assert!(
        ada_views.contains(&("f".into(), "Ada King".into())),
        "{changes:?}"
    );
    assert_eq!(
        ada_views.last(),
        Some(&("t".into(), String::new())),
        "{changes:?}"
    );
    assert_eq!(
        ada_views.iter().filter(|(d, _)| d == "t").count(),
        1,
        "{changes:?}"
    );
    assert_eq!(
        of(&grace),
        [("f".into(), "Grace Hopper".into())],
        "{changes:?}"
    );

    // Each table's head is its newest change.
    assert_eq!(
        psql_rows(&format!(
            "SELECT name, last_seq FROM {s}.table_heads ORDER BY name"
        )),
        [
            ["contact-views".to_string(), changes.len().to_string()],
            ["contacts".to_string(), expected.len().to_string()],
        ]
    );
    eprintln!(
        "{} write-model and {} read-model changes in {s}",
        expected.len(),
        changes.len()
    );
    drop(host);
    drop(pg);
    drop(nats);
    eprintln!("done after {:?}", started.elapsed());
}
