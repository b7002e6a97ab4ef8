//! The write side of the CQRS example (functions `create-contact` and
//! `change-contact`): commands validate their input and change the **write
//! model**, never the read model.
//!
//! The write model is normalised like a relational schema, in the document
//! table bound as `contacts`:
//!
//! * `contact/<id>` — the header: name, email, phone, timestamps;
//! * `address/<id>` — the child row: street, city, postal code, country
//!   (absent when the contact has no address).
//!
//! | command                              | answer                               |
//! |--------------------------------------|--------------------------------------|
//! | `POST /api/commands/contacts`        | `201` `{"id", "version"}` + Location |
//! | `PUT /api/commands/contacts/{id}`    | `200` `{"id", "version"}`            |
//! | `DELETE /api/commands/contacts/{id}` | `204`                                |
//!
//! Errors are JSON `{"error": ..., "fields": {...}}`: `400` for a body that
//! is not the expected JSON, `422` for values that fail validation, `404`
//! for an unknown contact, `412` when `If-Match` names an old version.
//!
//! The header is always written **last**: its version (the change-feed
//! sequence of the write) is the `version` a command returns, and once the
//! read model shows that version it reflects the whole command.

use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Map, json};
use gust_sdk::table::Table;
use serde::{Deserialize, Serialize};

/// The command body of `POST` and `PUT` (a `PUT` replaces the contact).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactInput {
    name: Option<String>,
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    address: Option<AddressInput>,
}

/// The address part of a command body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressInput {
    street: Option<String>,
    city: Option<String>,
    #[serde(default)]
    postal_code: Option<String>,
    country: Option<String>,
}

/// The header document `contact/<id>`.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    id: String,
    name: String,
    email: String,
    phone: Option<String>,
    created_at: String,
    updated_at: String,
}

/// The child document `address/<id>`.
#[derive(Debug, Serialize, Deserialize)]
struct Address {
    contact_id: String,
    street: String,
    city: String,
    postal_code: Option<String>,
    country: String,
}

/// Validated command input.
struct Contact {
    name: String,
    email: String,
    phone: Option<String>,
    address: Option<(String, String, Option<String>, String)>,
}

/// Dispatches on the method: `POST` creates, `PUT` replaces, `DELETE` deletes.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let contacts = Table::open("contacts");
    let result = match (req.method(), req.param("id")) {
        ("POST", None) => create(&contacts, &req),
        ("PUT", Some(id)) => update(&contacts, &req, id),
        ("DELETE", Some(id)) => delete(&contacts, &req, id),
        _ => Err(error(
            405,
            "use POST /api/commands/contacts or PUT/DELETE /api/commands/contacts/{id}",
        )),
    };
    result.unwrap_or_else(|e| e)
}

/// `POST`: a new contact with a fresh id.
fn create(contacts: &Table, req: &Request) -> Result<Response, Response> {
    let input = parse(req)?;
    let id = new_id();
    let now = now_rfc3339();
    let version = write(contacts, &id, input, now.clone(), now)?;
    Ok(Response::json(&json!({ "id": id, "version": version }))
        .with_status(201)
        .with_header("location", format!("/api/queries/contacts/{id}")))
}

/// `PUT`: replaces the contact's header and address (no `address` removes it).
fn update(contacts: &Table, req: &Request, id: &str) -> Result<Response, Response> {
    let current = existing(contacts, req, id)?;
    let input = parse(req)?;
    let header: Header = current.json().map_err(internal)?;
    let version = write(contacts, id, input, header.created_at, now_rfc3339())?;
    Ok(Response::json(&json!({ "id": id, "version": version })))
}

/// `DELETE`: removes the header first (the contact is gone for the read
/// side at once), then the address.
fn delete(contacts: &Table, req: &Request, id: &str) -> Result<Response, Response> {
    existing(contacts, req, id)?;
    contacts
        .delete(&format!("contact/{id}"))
        .map_err(internal)?;
    contacts
        .delete(&format!("address/{id}"))
        .map_err(internal)?;
    Ok(Response::status(204))
}

/// The header of contact `id`, checked against `If-Match` when given.
fn existing(
    contacts: &Table,
    req: &Request,
    id: &str,
) -> Result<gust_sdk::table::Document, Response> {
    let current = if valid_id(id) {
        contacts.get(&format!("contact/{id}")).map_err(internal)?
    } else {
        None
    };
    let Some(current) = current else {
        return Err(error(404, format!("no contact `{id}`")));
    };
    if let Some(expected) = req.header("if-match") {
        let expected = expected.trim().trim_matches('"');
        if expected != current.version.to_string() {
            return Err(error(
                412,
                format!(
                    "contact `{id}` changed: you have version {expected}, the current one is {}",
                    current.version
                ),
            ));
        }
    }
    Ok(current)
}

/// Writes the address (or removes it), then the header; returns the
/// header's version.
fn write(
    contacts: &Table,
    id: &str,
    input: Contact,
    created_at: String,
    updated_at: String,
) -> Result<u64, Response> {
    let address_key = format!("address/{id}");
    match input.address {
        Some((street, city, postal_code, country)) => {
            let address = Address {
                contact_id: id.to_owned(),
                street,
                city,
                postal_code,
                country,
            };
            contacts
                .put_json(&address_key, &address)
                .map_err(internal)?;
        }
        None => {
            contacts.delete(&address_key).map_err(internal)?;
        }
    }
    let header = Header {
        id: id.to_owned(),
        name: input.name,
        email: input.email,
        phone: input.phone,
        created_at,
        updated_at,
    };
    contacts
        .put_json(&format!("contact/{id}"), &header)
        .map_err(internal)
}

/// Parses and validates a command body.
fn parse(req: &Request) -> Result<Contact, Response> {
    let input: ContactInput = req
        .json()
        .map_err(|e| error(400, format!("the body is not a contact: {e}")))?;
    let mut fields = Map::new();
    let mut required = |field: &str, value: Option<String>, max: usize| -> String {
        let value = value.map(|v| v.trim().to_owned()).unwrap_or_default();
        if value.is_empty() {
            fields.insert(field.to_owned(), "is required".into());
        } else if value.chars().count() > max {
            fields.insert(
                field.to_owned(),
                format!("is longer than {max} characters").into(),
            );
        }
        value
    };
    let name = required("name", input.name, 200);
    let email = required("email", input.email, 254).to_ascii_lowercase();
    let address = input.address.map(|a| {
        (
            required("address.street", a.street, 200),
            required("address.city", a.city, 100),
            a.postal_code
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
            required("address.country", a.country, 100).to_ascii_uppercase(),
        )
    });
    if !email.is_empty() && !valid_email(&email) {
        fields.insert("email".into(), "is not a valid email address".into());
    }
    if let Some((_, _, postal_code, country)) = &address {
        if !fields.contains_key("address.country")
            && (country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()))
        {
            fields.insert(
                "address.country".into(),
                "must be a two-letter ISO 3166 code such as GB".into(),
            );
        }
        if postal_code.as_ref().is_some_and(|p| p.chars().count() > 16) {
            fields.insert(
                "address.postal_code".into(),
                "is longer than 16 characters".into(),
            );
        }
    }
    let phone = input
        .phone
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    if let Some(phone) = &phone {
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        if !(6..=15).contains(&digits)
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c))
        {
            fields.insert(
                "phone".into(),
                "must be 6 to 15 digits, optionally with + - ( ) . and spaces".into(),
            );
        }
    }
    if !fields.is_empty() {
        return Err(
            Response::json(&json!({ "error": "validation failed", "fields": fields }))
                .with_status(422),
        );
    }
    Ok(Contact {
        name,
        email,
        phone,
        address,
    })
}

/// `local@domain.tld` with no spaces and a dotted domain.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

/// A new contact id: `c-` and 16 random hex digits.
fn new_id() -> String {
    format!(
        "c-{:016x}",
        gust_sdk::wasi::random::random::get_random_u64()
    )
}

/// Whether `id` looks like one [`new_id`] makes.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("c-")
        .is_some_and(|hex| hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The current UTC time as RFC 3339 (`2024-03-01T12:00:00Z`).
fn now_rfc3339() -> String {
    rfc3339(gust_sdk::wasi::clocks::wall_clock::now().seconds as i64)
}

/// Seconds since the Unix epoch as RFC 3339 in UTC.
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}

/// A storage failure as a `500`.
fn internal(e: impl std::fmt::Display) -> Response {
    error(500, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_294_400), "2024-03-01T12:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn emails_and_ids() {
        assert!(valid_email("ada@example.com"));
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@c.de",
            "a@b@c.de",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(valid_id("c-00ff00ff00ff00ff"));
        assert!(!valid_id("c-00ff"));
        assert!(!valid_id("x-00ff00ff00ff00ff"));
    }
}
