// The personalised-ad page. Every API call uses a RELATIVE URL ("api/..."),
// so the page works at / and under a prefix such as /web-api/.
"use strict";

const $ = (id) => document.getElementById(id);
const times = (n) => `${n} ${n === 1 ? "time" : "times"}`;

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "content-type": "application/json", ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error || body.message || `${response.status} ${response.statusText}`);
  }
  return body;
}

async function loadCatalogue() {
  const { interests } = await api("api/ads");
  const box = $("interests");
  for (const name of interests) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = "interest";
    input.value = name;
    input.id = `interest-${name}`;
    label.append(input, " ", name);
    box.append(label);
  }
}

function profile() {
  return {
    age: Number($("age").value),
    region: $("region").value,
    interests: [...document.querySelectorAll("input[name=interest]:checked")].map((i) => i.value),
  };
}

async function showAd(event) {
  event.preventDefault();
  $("form-error").hidden = true;
  try {
    const choice = await api("api/ad", { method: "POST", body: JSON.stringify(profile()) });
    const ad = choice.ad;
    $("ad").dataset.id = ad.id;
    $("ad-advertiser").textContent = ad.advertiser;
    $("ad-title").textContent = ad.title;
    $("ad-text").textContent = ad.text;
    const matched = choice.matched_interests.length
      ? `matches your interest in ${choice.matched_interests.join(", ")}`
      : "shown to everyone in your region";
    $("ad-why").textContent =
      `Why this ad: ${matched}; best of ${choice.eligible} eligible ads (score ${choice.score.toFixed(1)}), shown ${times(choice.impressions)}.`;
    $("click-result").hidden = true;
    $("ad-card").hidden = false;
    await loadStats();
  } catch (e) {
    $("form-error").textContent = e.message;
    $("form-error").hidden = false;
  }
}

async function clickAd() {
  const id = $("ad").dataset.id;
  try {
    const result = await api(`api/ads/${encodeURIComponent(id)}/click`, { method: "POST", body: "{}" });
    $("click-result").textContent = `Thanks! That ad has been clicked ${times(result.clicks)}.`;
    $("click-result").hidden = false;
    await loadStats();
  } catch (e) {
    $("click-result").textContent = e.message;
    $("click-result").hidden = false;
  }
}

const percent = (ctr) => `${(ctr * 100).toFixed(1)}%`;

async function loadStats() {
  const stats = await api("api/stats");
  const shown = $("ad").dataset.id;
  const rows = stats.ads.map((ad) => {
    const tr = document.createElement("tr");
    tr.id = `stats-${ad.id}`;
    tr.dataset.impressions = ad.impressions;
    tr.dataset.clicks = ad.clicks;
    if (ad.id === shown) tr.className = "shown";
    for (const [text, cls] of [[ad.title, ""], [ad.impressions, "num"], [ad.clicks, "num"], [percent(ad.ctr), "num"]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  });
  document.querySelector("#stats tbody").replaceChildren(...rows);
  $("total-impressions").textContent = stats.impressions;
  $("total-clicks").textContent = stats.clicks;
  $("total-ctr").textContent = percent(stats.ctr);
  document.body.dataset.statsLoaded = "yes";
}

$("profile").addEventListener("submit", showAd);
$("ad-click").addEventListener("click", clickAd);
$("refresh-stats").addEventListener("click", () => loadStats());
loadCatalogue()
  .then(loadStats)
  .then(() => { document.body.dataset.ready = "yes"; })
  .catch((e) => {
    $("form-error").textContent = `cannot reach the API: ${e.message}`;
    $("form-error").hidden = false;
  });
