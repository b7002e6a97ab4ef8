//! The API of the web-api example: one crate behind three functions, told
//! apart by the function name Gust passes in.
//!
//! | function      | route                          | answer                                  |
//! |---------------|--------------------------------|-----------------------------------------|
//! | `choose-ad`   | `POST /api/ad`                 | the ad for the profile in the body      |
//! | `count-click` | `POST /api/ads/{id}/click`     | the ad's click count                    |
//! | `ad-report`   | `GET /api/ads`, `GET /api/stats` | the catalogue; impressions, clicks, CTR |
//!
//! Counters live in the kv store bound as `counts`: `impressions:<id>` and
//! `clicks:<id>`, incremented atomically. Errors are JSON `{"error": ...}`.

mod targeting;

use gust_sdk::http::{Request, Response};
use gust_sdk::kv::Store;
use gust_sdk::serde_json::json;
use targeting::{CATALOGUE, INTERESTS, Profile, REGIONS};

/// Routes to the function this instance runs as.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let result = match req.function_name().unwrap_or_default() {
        "choose-ad" => choose_ad(&req),
        "count-click" => count_click(&req),
        "ad-report" => report(&req),
        other => Err(error(500, format!("unknown function `{other}`"))),
    };
    result.unwrap_or_else(|e| e)
}

/// `POST /api/ad` with `{"age": 34, "interests": ["tech"], "region": "eu"}`.
fn choose_ad(req: &Request) -> Result<Response, Response> {
    let profile: Profile = req
        .json()
        .map_err(|e| error(400, format!("the body must be a JSON profile {{age, interests, region}}: {e}")))?;
    profile.validate().map_err(|e| error(422, e))?;
    let Some(choice) = targeting::choose(&profile) else {
        return Err(error(404, "no ad may be shown to this profile"));
    };
    let counts = counts()?;
    let impressions = counts
        .increment(&format!("impressions:{}", choice.ad.id), 1)
        .map_err(|e| error(500, e.to_string()))?;
    gust_sdk::log::info!(
        "ad {} for age {} in {} (score {:.1}, {} eligible)",
        choice.ad.id,
        profile.age,
        profile.region,
        choice.score,
        choice.eligible
    );
    Ok(Response::json(&json!({
        "ad": choice.ad,
        "score": choice.score,
        "matched_interests": choice.matched,
        "eligible": choice.eligible,
        "impressions": impressions,
    })))
}

/// `POST /api/ads/{id}/click`.
fn count_click(req: &Request) -> Result<Response, Response> {
    let id = req.param("id").unwrap_or_default();
    let Some(ad) = targeting::find(id) else {
        return Err(error(404, format!("no ad `{id}`")));
    };
    let counts = counts()?;
    let shown = counts
        .get_string(&format!("impressions:{}", ad.id))
        .map_err(|e| error(500, e.to_string()))?
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if shown == 0 {
        return Err(error(409, format!("ad `{id}` was never shown, so it cannot be clicked")));
    }
    let clicks = counts
        .increment(&format!("clicks:{}", ad.id), 1)
        .map_err(|e| error(500, e.to_string()))?;
    Ok(Response::json(&json!({ "id": ad.id, "clicks": clicks })))
}

/// `GET /api/ads` or `GET /api/stats`.
fn report(req: &Request) -> Result<Response, Response> {
    match req.param("report").unwrap_or_default() {
        "ads" => Ok(Response::json(&json!({
            "ads": CATALOGUE,
            "interests": INTERESTS,
            "regions": REGIONS,
        }))),
        "stats" => stats(),
        other => Err(error(404, format!("no report `{other}`; try ads or stats"))),
    }
}

/// Impressions, clicks and click-through rate per ad, and in total.
fn stats() -> Result<Response, Response> {
    let counts = counts()?;
    let keys: Vec<String> = CATALOGUE
        .iter()
        .flat_map(|a| [format!("impressions:{}", a.id), format!("clicks:{}", a.id)])
        .collect();
    let values = counts
        .get_many(&keys)
        .map_err(|e| error(500, e.to_string()))?;
    let value = |key: &str| -> u64 {
        values
            .iter()
            .flatten()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse().ok())
            .unwrap_or(0)
    };
    let (mut total_impressions, mut total_clicks) = (0, 0);
    let ads: Vec<_> = CATALOGUE
        .iter()
        .map(|a| {
            let impressions = value(&format!("impressions:{}", a.id));
            let clicks = value(&format!("clicks:{}", a.id));
            total_impressions += impressions;
            total_clicks += clicks;
            json!({
                "id": a.id,
                "title": a.title,
                "impressions": impressions,
                "clicks": clicks,
                "ctr": ctr(clicks, impressions),
            })
        })
        .collect();
    Ok(Response::json(&json!({
        "ads": ads,
        "impressions": total_impressions,
        "clicks": total_clicks,
        "ctr": ctr(total_clicks, total_impressions),
    })))
}

/// Clicks per impression (0 when never shown).
fn ctr(clicks: u64, impressions: u64) -> f64 {
    if impressions == 0 {
        0.0
    } else {
        clicks as f64 / impressions as f64
    }
}

fn counts() -> Result<Store, Response> {
    Store::open("counts").map_err(|e| error(500, format!("cannot open the counters: {e}")))
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}
