// The sales dashboard: polls the query function and draws hand-written SVG
// bar charts and tables. Every API call uses a RELATIVE URL ("api/..."), so
// the page works at / and under a prefix such as /csv-pipeline/.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

/** 1234567 cents -> "12,345.67" (no locale, so it reads the same everywhere). */
function money(cents) {
  const sign = cents < 0 ? "-" : "";
  const abs = Math.abs(cents);
  const whole = Math.floor(abs / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}${whole}.${String(abs % 100).padStart(2, "0")}`;
}
const count = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A vertical bar chart of `items` ({label, value}) into the <svg> `svg`. */
function barChart(svg, items, cls, idPrefix) {
  const width = svg.clientWidth || 480;
  const height = svg.clientHeight || 240;
  const top = 22, bottom = 28, left = 8, right = 8;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const max = Math.max(1, ...items.map((i) => i.value));
  const slot = (width - left - right) / Math.max(1, items.length);
  const barWidth = Math.min(64, slot * 0.6);
  svg.append(el("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }));
  items.forEach((item, i) => {
    const h = ((height - top - bottom) * item.value) / max;
    const x = left + slot * i + (slot - barWidth) / 2;
    const y = height - bottom - h;
    const g = el("g", { id: `${idPrefix}-${item.label}`, "data-label": item.label, "data-value": item.value });
    g.append(el("rect", { class: `bar ${cls}`, x, y, width: barWidth, height: h, rx: 3 }));
    g.append(el("text", { x: x + barWidth / 2, y: y - 6, "text-anchor": "middle" }, money(item.value)));
    g.append(el("text", { x: x + barWidth / 2, y: height - bottom + 16, "text-anchor": "middle" }, item.label));
    svg.append(g);
  });
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
  }
  return tr;
}

function render(summary, imports) {
  $("kpi-revenue").textContent = money(summary.revenue_cents);
  $("kpi-revenue").dataset.cents = summary.revenue_cents;
  $("kpi-units").textContent = count(summary.units);
  $("kpi-rows").textContent = count(summary.rows);
  $("kpi-files").textContent = count(summary.files);
  $("empty").hidden = summary.rows > 0;
  barChart($("chart-region"), summary.by_region.map((r) => ({ label: r.region, value: r.revenue_cents })), "region", "region");
  barChart($("chart-month"), summary.by_month.map((m) => ({ label: m.month, value: m.revenue_cents })), "month", "month");
  $("products").tBodies[0].replaceChildren(
    ...summary.top_products.map((p) => row([[p.product], [count(p.units), "num"], [money(p.revenue_cents), "num"]])),
  );
  $("imports").tBodies[0].replaceChildren(
    ...imports.items.map((i) => {
      const tr = row([
        [i.file],
        [i.status, `status-${i.status}`],
        [count(i.rows), "num"],
        [count(i.rejected), "num"],
        [i.errors.join("; "), "errors"],
        [i.imported_at],
      ]);
      tr.dataset.file = i.file;
      return tr;
    }),
  );
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  document.body.dataset.rows = summary.rows;
}

async function refresh() {
  try {
    const [summary, imports] = await Promise.all([getJson("api/summary"), getJson("api/imports")]);
    render(summary, imports);
  } catch (e) {
    $("updated").textContent = `Cannot reach the API: ${e.message}`;
  }
}

$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const response = await fetch(`api/uploads/${encodeURIComponent(file.name)}`, {
    method: "PUT",
    headers: { "content-type": "text/csv" },
    body: await file.text(),
  });
  const body = await response.json().catch(() => ({}));
  $("upload-result").textContent = response.ok ? `${body.file}: uploaded, importing…` : body.error;
  setTimeout(refresh, 500);
});

refresh();
setInterval(refresh, 2000);
