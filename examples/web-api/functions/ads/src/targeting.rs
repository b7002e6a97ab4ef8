//! The ad catalogue and the targeting rules: which ads a visitor may see and
//! which one wins.
//!
//! An ad is **eligible** when the visitor's age is in its age range and its
//! regions include the visitor's region (an empty list means everywhere).
//! Among eligible ads the highest **score** wins:
//!
//! ```text
//! score = bid_cents × (1 + 0.5 × shared interests) × (1.25 if the ad targets the region by name)
//! ```
//!
//! Ties go to the ad listed first. An ad sharing no interest with a visitor
//! who named some is kept only as a last resort (score × 0.2), so the
//! catch-all ad never beats a relevant one with a fair bid.

use serde::{Deserialize, Serialize};

/// Interests a visitor can pick.
pub const INTERESTS: [&str; 8] = [
    "tech", "outdoors", "travel", "food", "fitness", "music", "books", "gaming",
];

/// Regions a visitor can be in.
pub const REGIONS: [&str; 5] = ["eu", "na", "latam", "apac", "africa"];

/// One ad of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct Ad {
    /// Stable id, used in URLs and counters.
    pub id: &'static str,
    /// Who pays for it.
    pub advertiser: &'static str,
    /// Headline.
    pub title: &'static str,
    /// Body text.
    pub text: &'static str,
    /// Youngest and oldest visitor it may be shown to.
    pub ages: (u32, u32),
    /// Interests it targets.
    pub interests: &'static [&'static str],
    /// Regions it may be shown in; empty means everywhere.
    pub regions: &'static [&'static str],
    /// What the advertiser pays per impression, in cents per thousand.
    pub bid_cents: u32,
}

/// The catalogue, in priority order for ties.
pub const CATALOGUE: &[Ad] = &[
    Ad {
        id: "trail-boots",
        advertiser: "Ridgeline Outfitters",
        title: "Trail boots that climb with you",
        text: "Waterproof, 480 g a pair, resoled for free for five years.",
        ages: (18, 65),
        interests: &["outdoors", "fitness", "travel"],
        regions: &["eu", "na"],
        bid_cents: 420,
    },
    Ad {
        id: "dev-laptop",
        advertiser: "Kestrel Computers",
        title: "A laptop built for compilers",
        text: "16 cores, 64 GB, a keyboard you will not want to leave.",
        ages: (16, 99),
        interests: &["tech", "gaming"],
        regions: &[],
        bid_cents: 500,
    },
    Ad {
        id: "rail-pass",
        advertiser: "EuroRail Co.",
        title: "One pass, 33 countries",
        text: "Seven travel days in a month, first class for under 26s.",
        ages: (12, 99),
        interests: &["travel"],
        regions: &["eu"],
        bid_cents: 380,
    },
    Ad {
        id: "noodle-kit",
        advertiser: "Umami Box",
        title: "Hand-pulled noodles at home",
        text: "A weekly kit with flour, broth and a chef on video.",
        ages: (18, 99),
        interests: &["food"],
        regions: &["na", "apac", "eu"],
        bid_cents: 300,
    },
    Ad {
        id: "gym-app",
        advertiser: "Pulse Training",
        title: "Twelve minutes a day, no gym",
        text: "Plans that adapt to your heart rate. First month free.",
        ages: (16, 70),
        interests: &["fitness", "music"],
        regions: &[],
        bid_cents: 280,
    },
    Ad {
        id: "audiobooks",
        advertiser: "Longform Audio",
        title: "Every bestseller, read aloud",
        text: "Thirty days free, then one book a month, yours to keep.",
        ages: (13, 99),
        interests: &["books", "travel", "music"],
        regions: &[],
        bid_cents: 260,
    },
    Ad {
        id: "retro-console",
        advertiser: "Pixel Attic",
        title: "400 classic games in your pocket",
        text: "A handheld with the games you grew up with, saved to the cloud.",
        ages: (25, 55),
        interests: &["gaming", "tech"],
        regions: &["na", "eu", "latam"],
        bid_cents: 350,
    },
    Ad {
        id: "savings",
        advertiser: "Harbor Bank",
        title: "3.1% on savings, no strings",
        text: "Open an account in five minutes and withdraw any time.",
        ages: (18, 99),
        interests: &[],
        regions: &[],
        bid_cents: 150,
    },
];

/// A visitor's profile as the page sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Age in years.
    pub age: u32,
    /// Interests, from [`INTERESTS`].
    #[serde(default)]
    pub interests: Vec<String>,
    /// Region, from [`REGIONS`].
    pub region: String,
}

impl Profile {
    /// Checks the values; the error says what is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !(13..=120).contains(&self.age) {
            return Err(format!("age {} is out of range; it must be 13 to 120", self.age));
        }
        if !REGIONS.contains(&self.region.as_str()) {
            return Err(format!(
                "unknown region `{}`; use one of {}",
                self.region,
                REGIONS.join(", ")
            ));
        }
        if let Some(bad) = self.interests.iter().find(|i| !INTERESTS.contains(&i.as_str())) {
            return Err(format!(
                "unknown interest `{bad}`; use any of {}",
                INTERESTS.join(", ")
            ));
        }
        if self.interests.len() > INTERESTS.len() {
            return Err("too many interests".into());
        }
        Ok(())
    }
}

/// The winning ad, with why it won.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// The ad.
    pub ad: &'static Ad,
    /// Its score (see the module docs).
    pub score: f64,
    /// The visitor's interests it targets.
    pub matched: Vec<&'static str>,
    /// How many ads were eligible.
    pub eligible: usize,
}

/// Whether `ad` may be shown to `profile`.
pub fn eligible(ad: &Ad, profile: &Profile) -> bool {
    (ad.ages.0..=ad.ages.1).contains(&profile.age)
        && (ad.regions.is_empty() || ad.regions.contains(&profile.region.as_str()))
}

/// The score of an eligible `ad` for `profile`, and the interests shared.
pub fn score(ad: &Ad, profile: &Profile) -> (f64, Vec<&'static str>) {
    let matched: Vec<&'static str> = ad
        .interests
        .iter()
        .copied()
        .filter(|i| profile.interests.iter().any(|p| p == i))
        .collect();
    let mut score = f64::from(ad.bid_cents) * (1.0 + 0.5 * matched.len() as f64);
    if !ad.regions.is_empty() {
        score *= 1.25;
    }
    if matched.is_empty() && !profile.interests.is_empty() {
        score *= 0.2;
    }
    (score, matched)
}

/// The best ad for `profile` (there is always one: `savings` runs
/// everywhere for adults; a minor with no eligible ad gets `None`).
pub fn choose(profile: &Profile) -> Option<Choice> {
    let candidates: Vec<&'static Ad> = CATALOGUE.iter().filter(|a| eligible(a, profile)).collect();
    let eligible = candidates.len();
    let mut best: Option<Choice> = None;
    for ad in candidates {
        let (score, matched) = score(ad, profile);
        if best.as_ref().is_none_or(|b| score > b.score) {
            best = Some(Choice {
                ad,
                score,
                matched,
                eligible,
            });
        }
    }
    best
}

/// The ad with `id`.
pub fn find(id: &str) -> Option<&'static Ad> {
    CATALOGUE.iter().find(|a| a.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(age: u32, interests: &[&str], region: &str) -> Profile {
        Profile {
            age,
            interests: interests.iter().map(|s| s.to_string()).collect(),
            region: region.into(),
        }
    }

    #[test]
    fn interests_and_region_decide() {
        // 420 × 2 × 1.25 = 1050 beats the laptop's 500 × 1.5 = 750.
        let c = choose(&profile(34, &["outdoors", "fitness", "tech"], "eu")).unwrap();
        assert_eq!(c.ad.id, "trail-boots");
        // In APAC the boots are not eligible.
        let c = choose(&profile(34, &["outdoors", "fitness", "tech"], "apac")).unwrap();
        assert_eq!(c.ad.id, "dev-laptop");
        // Nothing shared: the highest bid among eligible ads, scaled down.
        assert_eq!(choose(&profile(40, &[], "africa")).unwrap().ad.id, "dev-laptop");
        assert_eq!(choose(&profile(30, &["food"], "eu")).unwrap().ad.id, "noodle-kit");
    }

    #[test]
    fn profiles_are_validated() {
        assert!(profile(12, &[], "eu").validate().is_err());
        assert!(profile(30, &[], "mars").validate().unwrap_err().contains("eu, na"));
        assert!(profile(30, &["knitting"], "eu").validate().is_err());
        assert!(profile(30, &["tech"], "eu").validate().is_ok());
    }
}
