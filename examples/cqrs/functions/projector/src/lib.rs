//! The projection of the CQRS example (function `project-contacts`): follows
//! the change feed of the write model `contacts` and keeps the read model
//! `contact-views` up to date, one flat document per contact.
//!
//! A change (`gust.table.upserted` or `gust.table.deleted`, subject =
//! `contact/<id>` or `address/<id>`) is taken as "contact `<id>` changed":
//! the projector reads the contact's header and address from the write model
//! and writes the flattened view, or deletes the view when the header is
//! gone. Re-projecting from the current state makes the projection
//! idempotent and order-proof, so at-least-once delivery, retries and a
//! rebuild from `start = "beginning"` all converge on the same read model.

use gust_sdk::serde_json::Value as Json;
use gust_sdk::table::Table;
use gust_sdk::{Event, EventError, log};
use serde::{Deserialize, Serialize};

/// The header document `contact/<id>` of the write model.
#[derive(Debug, Deserialize)]
struct Header {
    id: String,
    name: String,
    email: String,
    phone: Option<String>,
    created_at: String,
    updated_at: String,
}

/// The child document `address/<id>` of the write model.
#[derive(Debug, Deserialize)]
struct Address {
    street: String,
    city: String,
    postal_code: Option<String>,
    country: String,
}

/// The read model: everything a client shows, flat, in one document.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ContactView {
    id: String,
    name: String,
    email: String,
    phone: Option<String>,
    street: Option<String>,
    city: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
    /// One line for display: `12 St James's Square, SW1Y 4JH London, GB`.
    address: Option<String>,
    created_at: String,
    updated_at: String,
    /// The newest write-model version folded in (the change-feed sequence).
    version: u64,
}

/// Re-projects the contact a change is about.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let key = event
        .subject()
        .ok_or_else(|| EventError::fatal("a change feed event without a key"))?;
    let Some(id) = key
        .strip_prefix("contact/")
        .or_else(|| key.strip_prefix("address/"))
    else {
        log::warn!("ignoring change of unknown document `{key}`");
        return Ok(());
    };
    let contacts = Table::open("contacts");
    let views = Table::open("views");
    let Some(header) = contacts.get(&format!("contact/{id}"))? else {
        // No header: the contact was deleted (or its address was written
        // first and the header is still to come).
        if views.delete(id)? {
            log::info!("contact {id}: view deleted");
        }
        return Ok(());
    };
    let address = contacts.get(&format!("address/{id}"))?;
    let fields: Header = header
        .json()
        .map_err(|e| EventError::fatal(e.to_string()))?;
    let mut version = header.version;
    let mut view = ContactView {
        id: fields.id,
        name: fields.name,
        email: fields.email,
        phone: fields.phone,
        street: None,
        city: None,
        postal_code: None,
        country: None,
        address: None,
        created_at: fields.created_at,
        updated_at: fields.updated_at,
        version: 0,
    };
    if let Some(doc) = address {
        let a: Address = doc.json().map_err(|e| EventError::fatal(e.to_string()))?;
        version = version.max(doc.version);
        let town = match &a.postal_code {
            Some(code) => format!("{code} {}", a.city),
            None => a.city.clone(),
        };
        view.address = Some(format!("{}, {town}, {}", a.street, a.country));
        view.street = Some(a.street);
        view.city = Some(a.city);
        view.postal_code = a.postal_code;
        view.country = Some(a.country);
    }
    view.version = version;
    // Skip writes that change nothing (replays, the second half of a command).
    let current: Option<Json> = views.get_json(id)?;
    if current
        .and_then(|c| ContactView::deserialize(c).ok())
        .as_ref()
        == Some(&view)
    {
        return Ok(());
    }
    views.put_json(id, &view)?;
    log::info!("contact {id}: view at version {version}");
    Ok(())
}
