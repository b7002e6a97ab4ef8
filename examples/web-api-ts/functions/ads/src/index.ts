/**
 * The API of the web-api example in TypeScript: one function folder behind
 * three functions, told apart by the function name Gust passes in.
 *
 * | function      | route                            | answer                                  |
 * |---------------|----------------------------------|-----------------------------------------|
 * | `choose-ad`   | `POST /api/ad`                   | the ad for the profile in the body      |
 * | `count-click` | `POST /api/ads/{id}/click`       | the ad's click count                    |
 * | `ad-report`   | `GET /api/ads`, `GET /api/stats` | the catalogue; impressions, clicks, CTR |
 *
 * Counters live in the kv store bound as `counts`: `impressions:<id>` and
 * `clicks:<id>`, incremented atomically. Errors are JSON `{"error": ...}`.
 */
import { functionName, kv, log, params } from "@gust/sdk";
import { CATALOGUE, INTERESTS, REGIONS, choose, find, parseProfile, validate } from "./targeting";

/** A JSON error response: `{"error": message}`. */
class Failure {
  constructor(
    readonly status: number,
    readonly message: string,
  ) {}
}

export default {
  async fetch(request: Request): Promise<Response> {
    try {
      switch (functionName(request)) {
        case "choose-ad":
          return await chooseAd(request);
        case "count-click":
          return countClick(request);
        case "ad-report":
          return report(request);
        default:
          throw new Failure(500, `unknown function \`${functionName(request)}\``);
      }
    } catch (e) {
      if (e instanceof Failure) return Response.json({ error: e.message }, { status: e.status });
      throw e;
    }
  },
};

/** `POST /api/ad` with `{"age": 34, "interests": ["tech"], "region": "eu"}`. */
async function chooseAd(request: Request): Promise<Response> {
  let profile;
  try {
    profile = parseProfile(JSON.parse(await request.text()));
  } catch (e) {
    throw new Failure(
      400,
      `the body must be a JSON profile {age, interests, region}: ${(e as Error).message}`,
    );
  }
  const invalid = validate(profile);
  if (invalid) throw new Failure(422, invalid);
  const choice = choose(profile);
  if (!choice) throw new Failure(404, "no ad may be shown to this profile");
  const impressions = counts().increment(`impressions:${choice.ad.id}`);
  log.info(
    `ad ${choice.ad.id} for age ${profile.age} in ${profile.region} (score ${choice.score.toFixed(1)}, ${choice.eligible} eligible)`,
  );
  return Response.json({
    ad: choice.ad,
    score: choice.score,
    matched_interests: choice.matched,
    eligible: choice.eligible,
    impressions,
  });
}

/** `POST /api/ads/{id}/click`. */
function countClick(request: Request): Response {
  const id = params(request).id ?? "";
  const ad = find(id);
  if (!ad) throw new Failure(404, `no ad \`${id}\``);
  const store = counts();
  const shown = Number(store.getText(`impressions:${ad.id}`)?.trim() ?? 0) || 0;
  if (shown === 0) throw new Failure(409, `ad \`${id}\` was never shown, so it cannot be clicked`);
  const clicks = store.increment(`clicks:${ad.id}`);
  return Response.json({ id: ad.id, clicks });
}

/** `GET /api/ads` or `GET /api/stats`. */
function report(request: Request): Response {
  const which = params(request).report ?? "";
  if (which === "ads") {
    return Response.json({ ads: CATALOGUE, interests: INTERESTS, regions: REGIONS });
  }
  if (which === "stats") return stats();
  throw new Failure(404, `no report \`${which}\`; try ads or stats`);
}

/** Impressions, clicks and click-through rate per ad, and in total. */
function stats(): Response {
  const store = counts();
  const value = (key: string) => Number(store.getText(key)?.trim() ?? 0) || 0;
  let totalImpressions = 0;
  let totalClicks = 0;
  const ads = CATALOGUE.map((a) => {
    const impressions = value(`impressions:${a.id}`);
    const clicks = value(`clicks:${a.id}`);
    totalImpressions += impressions;
    totalClicks += clicks;
    return { id: a.id, title: a.title, impressions, clicks, ctr: ctr(clicks, impressions) };
  });
  return Response.json({
    ads,
    impressions: totalImpressions,
    clicks: totalClicks,
    ctr: ctr(totalClicks, totalImpressions),
  });
}

/** Clicks per impression (0 when never shown). */
function ctr(clicks: number, impressions: number): number {
  return impressions === 0 ? 0 : clicks / impressions;
}

function counts(): kv.Store {
  try {
    return kv.open("counts");
  } catch (e) {
    throw new Failure(500, `cannot open the counters: ${(e as Error).message}`);
  }
}
