/**
 * The ad catalogue and the targeting rules: which ads a visitor may see and
 * which one wins.
 *
 * An ad is **eligible** when the visitor's age is in its age range and its
 * regions include the visitor's region (an empty list means everywhere).
 * Among eligible ads the highest **score** wins:
 *
 * ```text
 * score = bid_cents × (1 + 0.5 × shared interests) × (1.25 if the ad targets the region by name)
 * ```
 *
 * Ties go to the ad listed first. An ad sharing no interest with a visitor
 * who named some is kept only as a last resort (score × 0.2), so the
 * catch-all ad never beats a relevant one with a fair bid.
 */

/** Interests a visitor can pick. */
export const INTERESTS = ["tech", "outdoors", "travel", "food", "fitness", "music", "books", "gaming"];

/** Regions a visitor can be in. */
export const REGIONS = ["eu", "na", "latam", "apac", "africa"];

/** One ad of the catalogue. */
export interface Ad {
  /** Stable id, used in URLs and counters. */
  id: string;
  /** Who pays for it. */
  advertiser: string;
  /** Headline. */
  title: string;
  /** Body text. */
  text: string;
  /** Youngest and oldest visitor it may be shown to. */
  ages: [number, number];
  /** Interests it targets. */
  interests: string[];
  /** Regions it may be shown in; empty means everywhere. */
  regions: string[];
  /** What the advertiser pays per impression, in cents per thousand. */
  bid_cents: number;
}

/** The catalogue, in priority order for ties. */
export const CATALOGUE: Ad[] = [
  {
    id: "trail-boots",
    advertiser: "Ridgeline Outfitters",
    title: "Trail boots that climb with you",
    text: "Waterproof, 480 g a pair, resoled for free for five years.",
    ages: [18, 65],
    interests: ["outdoors", "fitness", "travel"],
    regions: ["eu", "na"],
    bid_cents: 420,
  },
  {
    id: "dev-laptop",
    advertiser: "Kestrel Computers",
    title: "A laptop built for compilers",
    text: "16 cores, 64 GB, a keyboard you will not want to leave.",
    ages: [16, 99],
    interests: ["tech", "gaming"],
    regions: [],
    bid_cents: 500,
  },
  {
    id: "rail-pass",
    advertiser: "EuroRail Co.",
    title: "One pass, 33 countries",
    text: "Seven travel days in a month, first class for under 26s.",
    ages: [12, 99],
    interests: ["travel"],
    regions: ["eu"],
    bid_cents: 380,
  },
  {
    id: "noodle-kit",
    advertiser: "Umami Box",
    title: "Hand-pulled noodles at home",
    text: "A weekly kit with flour, broth and a chef on video.",
    ages: [18, 99],
    interests: ["food"],
    regions: ["na", "apac", "eu"],
    bid_cents: 300,
  },
  {
    id: "gym-app",
    advertiser: "Pulse Training",
    title: "Twelve minutes a day, no gym",
    text: "Plans that adapt to your heart rate. First month free.",
    ages: [16, 70],
    interests: ["fitness", "music"],
    regions: [],
    bid_cents: 280,
  },
  {
    id: "audiobooks",
    advertiser: "Longform Audio",
    title: "Every bestseller, read aloud",
    text: "Thirty days free, then one book a month, yours to keep.",
    ages: [13, 99],
    interests: ["books", "travel", "music"],
    regions: [],
    bid_cents: 260,
  },
  {
    id: "retro-console",
    advertiser: "Pixel Attic",
    title: "400 classic games in your pocket",
    text: "A handheld with the games you grew up with, saved to the cloud.",
    ages: [25, 55],
    interests: ["gaming", "tech"],
    regions: ["na", "eu", "latam"],
    bid_cents: 350,
  },
  {
    id: "savings",
    advertiser: "Harbor Bank",
    title: "3.1% on savings, no strings",
    text: "Open an account in five minutes and withdraw any time.",
    ages: [18, 99],
    interests: [],
    regions: [],
    bid_cents: 150,
  },
];

/** A visitor's profile as the page sends it. */
export interface Profile {
  /** Age in years. */
  age: number;
  /** Interests, from {@link INTERESTS}. */
  interests: string[];
  /** Region, from {@link REGIONS}. */
  region: string;
}

/**
 * Reads a profile from parsed JSON: the shape (an error here is a 400) is
 * checked apart from the values ({@link validate}, a 422).
 */
export function parseProfile(value: unknown): Profile {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error("expected an object");
  }
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v)) {
    if (!["age", "interests", "region"].includes(key)) {
      throw new Error(`unknown field \`${key}\`, expected one of \`age\`, \`interests\`, \`region\``);
    }
  }
  if (typeof v.age !== "number" || !Number.isInteger(v.age) || v.age < 0) {
    throw new Error("`age` must be a whole number");
  }
  if (typeof v.region !== "string") throw new Error("`region` must be a string");
  const interests = v.interests ?? [];
  if (!Array.isArray(interests) || interests.some((i) => typeof i !== "string")) {
    throw new Error("`interests` must be a list of strings");
  }
  return { age: v.age, region: v.region, interests: interests as string[] };
}

/** Checks the values; the error says what is wrong and what is allowed. */
export function validate(p: Profile): string | undefined {
  if (p.age < 13 || p.age > 120) return `age ${p.age} is out of range; it must be 13 to 120`;
  if (!REGIONS.includes(p.region)) {
    return `unknown region \`${p.region}\`; use one of ${REGIONS.join(", ")}`;
  }
  const bad = p.interests.find((i) => !INTERESTS.includes(i));
  if (bad !== undefined) return `unknown interest \`${bad}\`; use any of ${INTERESTS.join(", ")}`;
  if (p.interests.length > INTERESTS.length) return "too many interests";
  return undefined;
}

/** The winning ad, with why it won. */
export interface Choice {
  ad: Ad;
  score: number;
  matched: string[];
  eligible: number;
}

/** Whether `ad` may be shown to `p`. */
export function eligible(ad: Ad, p: Profile): boolean {
  return (
    p.age >= ad.ages[0] &&
    p.age <= ad.ages[1] &&
    (ad.regions.length === 0 || ad.regions.includes(p.region))
  );
}

/** The score of an eligible `ad` for `p`, and the interests shared. */
export function score(ad: Ad, p: Profile): [number, string[]] {
  const matched = ad.interests.filter((i) => p.interests.includes(i));
  let s = ad.bid_cents * (1 + 0.5 * matched.length);
  if (ad.regions.length > 0) s *= 1.25;
  if (matched.length === 0 && p.interests.length > 0) s *= 0.2;
  return [s, matched];
}

/** The best ad for `p`, or `undefined` when none may be shown. */
export function choose(p: Profile): Choice | undefined {
  const candidates = CATALOGUE.filter((a) => eligible(a, p));
  let best: Choice | undefined;
  for (const ad of candidates) {
    const [s, matched] = score(ad, p);
    if (best === undefined || s > best.score) {
      best = { ad, score: s, matched, eligible: candidates.length };
    }
  }
  return best;
}

/** The ad with `id`. */
export function find(id: string): Ad | undefined {
  return CATALOGUE.find((a) => a.id === id);
}
