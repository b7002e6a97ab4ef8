// Gust console: vanilla JavaScript, no framework, no build step. It polls
// the admin API next to it (`../stats`, `../invocations`, `../logs`,
// `../queues/...`, addressed relative to this page so a prefix such as
// `/<app>/_gust/console/` keeps working) with the admin key the person
// typed, kept in this tab's sessionStorage. Charts are inline SVG.
'use strict';

(() => {
  const POLL_MS = 2000;     // how often the page asks for stats
  const HISTORY = 90;       // chart points kept (3 minutes at 2 s)
  const INVOCATIONS = 60;   // rows in the invocations table
  const SVG = 'http://www.w3.org/2000/svg';
  const STORE = 'gust-console-key:' + location.pathname;

  const $ = (sel) => document.querySelector(sel);
  const state = {
    key: sessionStorage.getItem(STORE),
    timer: null,
    prev: new Map(),     // function -> last stats sample {t, invocations, errors, buckets}
    series: new Map(),   // function -> [{t, rate, errors, p50, p99}]
    polling: false,      // a poll is running
    again: false,        // poll again as soon as it ends
    selected: null,      // invocation id whose logs are shown
    filter: '',
    cluster: true,       // try the cluster API until it says there is none
    peek: null,          // queue whose messages are shown
  };

  // ── The admin API ────────────────────────────────────────────────────
  const url = (path) => new URL('../' + path, location.href).toString();

  async function call(path, options = {}) {
    const headers = Object.assign({ 'x-gust-key': state.key || '' }, options.headers || {});
    const response = await fetch(url(path), Object.assign({}, options, { headers, cache: 'no-store' }));
    if (response.status === 401) {
      signOut('The admin key was refused.');
      throw new Error('unauthorized');
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).message || message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }
  const json = async (path, options) => (await call(path, options)).json();

  // ── Sign in / out ────────────────────────────────────────────────────
  async function signIn(key) {
    state.key = key;
    const app = await json('app');
    sessionStorage.setItem(STORE, key);
    $('#app-name').textContent = app.name;
    document.title = `${app.name} · Gust console`;
    $('#login').hidden = true;
    $('#console').hidden = false;
    $('#nav').hidden = false;
    $('#logout').hidden = false;
    document.body.dataset.signedIn = 'yes';
    tick();
  }

  function signOut(message) {
    sessionStorage.removeItem(STORE);
    state.key = null;
    clearTimeout(state.timer);
    state.timer = null;
    $('#console').hidden = true;
    $('#nav').hidden = true;
    $('#logout').hidden = true;
    $('#login').hidden = false;
    $('#status').textContent = 'not signed in';
    $('#login-error').textContent = message || '';
    document.body.dataset.signedIn = 'no';
  }

  // ── Polling ──────────────────────────────────────────────────────────
  // One poll at a time: a call while one runs makes it poll again at once.
  async function tick() {
    clearTimeout(state.timer);
    if (!state.key) return;
    if (state.polling) {
      state.again = true;
      return;
    }
    state.polling = true;
    state.again = false;
    try {
      const invPath = `invocations?limit=${INVOCATIONS}` +
        (state.filter ? `&function=${encodeURIComponent(state.filter)}` : '');
      const [stats, invocations] = await Promise.all([json('stats'), json(invPath)]);
      render(stats);
      renderInvocations(invocations.invocations);
      if (state.cluster) await renderCluster();
      $('#status').textContent = `node ${stats.node} · up ${duration(stats.uptime_seconds)} · updated ${clock(new Date())}`;
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    } catch (e) {
      if (!state.key) return;
      $('#status').textContent = `cannot reach the host: ${e.message}`;
    } finally {
      state.polling = false;
    }
    if (!state.key) return;
    state.timer = setTimeout(tick, state.again ? 0 : POLL_MS);
  }

  function render(stats) {
    $('#app-name').textContent = stats.app;
    renderFunctions(stats.functions);
    renderQueues(stats.queues);
    renderStreams(stats.streams);
    renderTimers(stats.timers);
    renderGateway(stats.gateway);
  }

  // ── Functions and their charts ───────────────────────────────────────
  function renderFunctions(functions) {
    const list = $('#function-list');
    const now = Date.now();
    const names = new Set();
    for (const f of functions) {
      names.add(f.name);
      let card = list.querySelector(`article[data-function="${CSS.escape(f.name)}"]`);
      if (!card) {
        card = functionCard(f);
        list.appendChild(card);
      }
      card.classList.toggle('inactive', f.invocations === undefined);
      sample(f, now);
      const points = state.series.get(f.name) || [];
      const last = points[points.length - 1];
      text(card, '.n-total', count(f.invocations));
      text(card, '.n-errors', count(f.errors));
      text(card, '.n-p50', ms(f.p50_ms));
      text(card, '.n-p99', ms(f.p99_ms));
      text(card, '.n-inflight', count(f.inflight));
      text(card, '.rate-now', last ? `${num(last.rate)}/s` : '–');
      text(card, '.latency-now', last && last.p99 !== null ? `p99 ${ms(last.p99)}` : '–');
      text(card, '.errors-now', last ? `${num(last.errors)}/s` : '–');
      chart(card.querySelector('[data-chart="rate"]'), points, [{ key: 'rate', cls: 'rate', area: true }]);
      chart(card.querySelector('[data-chart="latency"]'), points, [
        { key: 'p50', cls: 'p50' }, { key: 'p99', cls: 'p99' },
      ]);
      chart(card.querySelector('[data-chart="errors"]'), points, [{ key: 'errors', cls: 'errors', area: true }]);
    }
    for (const card of list.querySelectorAll('article[data-function]')) {
      if (!names.has(card.dataset.function)) card.remove();
    }
    syncFilter(functions.map((f) => f.name));
    $('#window-note').textContent = `charts: last ${Math.round(HISTORY * POLL_MS / 60000)} minutes, one point per ${POLL_MS / 1000} s`;
  }

  function functionCard(f) {
    const card = el('article', 'fn');
    card.dataset.function = f.name;
    const head = el('header');
    head.append(el('h3', null, f.name), el('span', 'badge', f.trigger.kind), el('span', 'trigger', describe(f.trigger)));
    const bindings = el('div', 'bindings', f.bindings.length
      ? 'bindings: ' + f.bindings.map((b) => `${b.name} → ${b.kind} ${b.resource}`).join(' · ')
      : 'no bindings');
    const numbers = el('div', 'numbers');
    for (const [cls, label] of [['total', 'invocations'], ['errors', 'errors'], ['p50', 'p50'], ['p99', 'p99'], ['inflight', 'running']]) {
      const span = el('span');
      if (cls === 'p50' || cls === 'p99') span.append(`${label} `, el('b', `n-${cls}`, '–'));
      else span.append(el('b', `n-${cls}`, '0'), ` ${label}`);
      numbers.append(span);
    }
    const charts = el('div', 'charts');
    for (const [name, caption, now] of [
      ['rate', 'invocations / s', 'rate-now'],
      ['latency', null, 'latency-now'],
      ['errors', 'errors / s', 'errors-now'],
    ]) {
      const fig = el('figure');
      const cap = el('figcaption');
      if (caption) cap.append(el('span', null, caption));
      else {
        const legend = el('span', 'legend');
        legend.append('latency ', el('span', 'p50', 'p50'), ' / ', el('span', 'p99', 'p99'));
        cap.append(legend);
      }
      cap.append(el('span', `now ${now}`, '–'));
      const svg = document.createElementNS(SVG, 'svg');
      svg.setAttribute('class', 'chart');
      svg.setAttribute('viewBox', '0 0 300 64');
      svg.setAttribute('preserveAspectRatio', 'none');
      svg.dataset.chart = name;
      fig.append(cap, svg);
      charts.append(fig);
    }
    card.append(head, bindings, numbers, charts);
    return card;
  }

  // One chart point per poll: rates and quantiles over the time since the
  // previous poll, from the differences of the cumulative counters.
  function sample(f, t) {
    if (f.invocations === undefined) return;
    const prev = state.prev.get(f.name);
    const d = f.durations;
    const current = { t, invocations: f.invocations, errors: f.errors, counts: d.counts.slice(), above: d.above };
    state.prev.set(f.name, current);
    if (!prev || f.invocations < prev.invocations) return; // first sample, or counters restarted
    const seconds = Math.max((t - prev.t) / 1000, 0.001);
    const counts = d.counts.map((c, i) => Math.max(c - (prev.counts[i] || 0), 0));
    const above = Math.max(d.above - prev.above, 0);
    const series = state.series.get(f.name) || [];
    series.push({
      t,
      rate: (f.invocations - prev.invocations) / seconds,
      errors: (f.errors - prev.errors) / seconds,
      p50: quantile(d.bounds_ms, counts, above, 0.5),
      p99: quantile(d.bounds_ms, counts, above, 0.99),
    });
    while (series.length > HISTORY) series.shift();
    state.series.set(f.name, series);
  }

  // As Prometheus' histogram_quantile: linear inside the bucket.
  function quantile(bounds, counts, above, q) {
    const total = counts.reduce((a, b) => a + b, 0) + above;
    if (!total) return null;
    const rank = q * total;
    let below = 0;
    let lower = 0;
    for (let i = 0; i < bounds.length; i++) {
      const n = counts[i];
      if (n > 0 && below + n >= rank) {
        return lower + (bounds[i] - lower) * Math.min(1, Math.max(0, (rank - below) / n));
      }
      below += n;
      lower = bounds[i];
    }
    return lower;
  }

  // Draws `lines` (keys of the points) into `svg`, scaled to the largest
  // value; x is time over the last HISTORY polls.
  function chart(svg, points, lines) {
    const W = 300;
    const H = 64;
    const top = 10;
    while (svg.firstChild) svg.firstChild.remove();
    for (const y of [top, (top + H) / 2, H - 1]) {
      const g = document.createElementNS(SVG, 'line');
      g.setAttribute('class', 'grid-line');
      g.setAttribute('x1', 0); g.setAttribute('x2', W);
      g.setAttribute('y1', y); g.setAttribute('y2', y);
      svg.append(g);
    }
    let max = 0;
    for (const p of points) for (const l of lines) if (p[l.key] !== null) max = Math.max(max, p[l.key]);
    const scale = max > 0 ? max : 1;
    // At least a minute wide, so the first points are not a sliver.
    const span = Math.min(HISTORY, Math.max(points.length, 30));
    const x = (i) => W - (points.length - 1 - i) * (W / (span - 1));
    const y = (v) => H - 1 - (v / scale) * (H - 1 - top);
    svg.dataset.points = String(points.length);
    svg.dataset.max = String(max);
    for (const l of lines) {
      let d = '';
      let first = null;
      let lastX = null;
      points.forEach((p, i) => {
        const v = p[l.key];
        if (v === null || v === undefined) return;
        d += `${d ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        if (first === null) first = x(i);
        lastX = x(i);
      });
      if (!d) continue;
      if (l.area) {
        const area = document.createElementNS(SVG, 'path');
        area.setAttribute('class', `area ${l.cls}`);
        area.setAttribute('d', `${d}L${lastX.toFixed(1)},${H - 1}L${first.toFixed(1)},${H - 1}Z`);
        svg.append(area);
      }
      const path = document.createElementNS(SVG, 'path');
      path.setAttribute('class', `line ${l.cls}`);
      path.setAttribute('d', d);
      svg.append(path);
    }
    const label = document.createElementNS(SVG, 'text');
    label.setAttribute('x', 3);
    label.setAttribute('y', 8);
    label.textContent = points.length ? `max ${lines[0].key === 'rate' || lines[0].key === 'errors' ? num(max) : ms(max)}` : 'waiting for data';
    svg.append(label);
  }

  function describe(t) {
    switch (t.kind) {
      case 'http': return `${(t.methods && t.methods.length) ? t.methods.join(',') : 'ANY'} ${t.route} (${t.auth})`;
      case 'queue': return `queue ${t.queue}`;
      case 'topic': return `topic ${t.topic}`;
      case 'timer': return `${t.schedule}${t.time_zone ? ' ' + t.time_zone : ''}`;
      case 'stream': return `stream ${t.stream}`;
      case 'blob': return `${t.container}/${t.path}`;
      case 'changefeed': return `table ${t.table}`;
      case 'mqtt': return `mqtt ${t.topic}`;
      default: {
        const rest = Object.assign({}, t);
        delete rest.kind;
        return Object.keys(rest).length ? JSON.stringify(rest) : '';
      }
    }
  }

  // ── Invocations and their logs ───────────────────────────────────────
  function syncFilter(names) {
    const select = $('#inv-filter');
    const have = new Set([...select.options].map((o) => o.value));
    for (const name of names) {
      if (!have.has(name)) select.append(new Option(name, name));
    }
  }

  function renderInvocations(list) {
    const body = $('#inv-table tbody');
    $('#inv-empty').hidden = list.length > 0;
    sync(body, list, (i) => i.id, (i) => {
      const tr = el('tr');
      tr.dataset.id = i.id;
      tr.dataset.function = i.function;
      tr.dataset.outcome = i.outcome;
      const outcome = el('td');
      outcome.append(el('span', `badge ${i.outcome}`, i.status ? `${i.outcome} ${i.status}` : i.outcome));
      const detail = i.request || (i.event ? `event ${shortEvent(i.event)} · attempt ${i.attempt}` : '');
      tr.append(
        el('td', 'mono', clock(new Date(i.started), true)),
        el('td', null, i.function),
        el('td', null, i.trigger),
        outcome,
        el('td', 'num', ms(i.duration_ms)),
        el('td', 'mono', detail),
        el('td', 'mono', short(i.id)),
      );
      if (i.error) tr.title = i.error;
      tr.tabIndex = 0;
      tr.addEventListener('click', () => showLogs(i));
      tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') showLogs(i); });
      return tr;
    });
    for (const tr of body.rows) tr.classList.toggle('selected', tr.dataset.id === state.selected);
  }

  async function showLogs(inv) {
    state.selected = inv.id;
    for (const tr of $('#inv-table tbody').rows) tr.classList.toggle('selected', tr.dataset.id === inv.id);
    const panel = $('#inv-logs');
    panel.classList.remove('replaying');
    panel.replaceChildren(el('h3', null, `${inv.function} · ${inv.outcome}${inv.status ? ' ' + inv.status : ''} · ${ms(inv.duration_ms)}`));
    panel.dataset.invocation = inv.id;
    const meta = el('div', 'meta', `invocation ${inv.id} · trace ${inv.trace_id} · ${inv.started}`);
    panel.append(meta);
    if (inv.error) panel.append(el('p', 'error', inv.error));
    const pre = el('pre', 'log-lines', 'loading…');
    panel.append(pre);
    if (inv.replayable) {
      const replay = el('button', 'replay', 'Replay against the current version');
      replay.type = 'button';
      replay.title = 'Run the function again on this invocation\'s event (marked gust-replay) and compare';
      replay.addEventListener('click', () => replayInvocation(inv, replay));
      panel.append(replay);
    }
    try {
      const text = await (await call(`logs?invocation=${encodeURIComponent(inv.id)}&format=json&tail=1000`)).text();
      const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((l) => l.message !== undefined);
      if (state.selected !== inv.id) return;
      pre.replaceChildren();
      if (!lines.length) pre.textContent = 'No log lines for this invocation.';
      for (const l of lines) {
        pre.append(el('div', `line-${l.level}`, `${l.time.slice(11, 23)} ${l.level.padEnd(5)} ${l.message}`));
      }
    } catch (e) {
      pre.textContent = `cannot read the logs: ${e.message}`;
    }
  }

  // ── Replay: the recorded outcome beside a new run ─────────────────────
  async function replayInvocation(inv, button) {
    const panel = $('#inv-logs');
    panel.querySelector('.replay-result')?.remove();
    const result = el('div', 'replay-result', 'replaying…');
    panel.append(result);
    button.disabled = true;
    try {
      const answer = await json(`replay/${encodeURIComponent(inv.function)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ invocation: inv.id }),
      });
      if (state.selected !== inv.id) return;
      result.replaceChildren(
        replaySide('Recorded', answer.recorded, 'recorded'),
        replaySide('Replay (current version)', answer.replay, 'replayed'),
      );
      panel.classList.add('replaying');
      result.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      result.replaceChildren(el('p', 'error', `replay failed: ${e.message}`));
    } finally {
      button.disabled = false;
    }
  }

  function replaySide(title, side, cls) {
    const i = side.invocation;
    const box = el('div', `side ${cls}`);
    const head = el('h4', null, `${title} `);
    head.append(el('span', `badge ${i.outcome}`, i.outcome));
    box.append(head, el('div', 'meta', `${ms(i.duration_ms)} · invocation ${short(i.id)} · ${i.started}`));
    if (i.error) box.append(el('p', 'error', i.error));
    const pre = el('pre', 'log-lines');
    if (!side.logs.length) pre.textContent = 'No log lines.';
    for (const l of side.logs) {
      pre.append(el('div', `line-${l.level}`, `${l.time.slice(11, 23)} ${l.level.padEnd(5)} ${l.message}`));
    }
    box.append(pre);
    return box;
  }

  // ── Queues: depth, in flight, dead letters, peek and redrive ─────────
  function renderQueues(queues) {
    $('#queue-empty').hidden = queues.length > 0;
    $('#queue-table').hidden = queues.length === 0;
    sync($('#queue-table tbody'), queues, (q) => q.name, (q) => {
      const tr = el('tr');
      tr.dataset.queue = q.name;
      const peek = el('button', 'secondary peek', 'Peek');
      peek.type = 'button';
      peek.addEventListener('click', () => peekQueue(q.name));
      const redrive = el('button', 'redrive', 'Redrive');
      redrive.type = 'button';
      redrive.title = 'Move every dead letter back onto the queue';
      redrive.addEventListener('click', () => redriveQueue(q.name, redrive));
      const actions = el('div', 'actions');
      actions.append(peek, redrive);
      const cell = el('td');
      cell.append(actions);
      tr.append(el('td', 'mono', q.name), el('td', 'consumers'), el('td', 'num depth'),
        el('td', 'num inflight'), el('td', 'num dead'), cell);
      return tr;
    }, (tr, q) => {
      text(tr, '.consumers', q.functions.length ? q.functions.join(', ') : '(sent to only)');
      text(tr, '.depth', q.depth === null ? '?' : count(q.depth));
      text(tr, '.inflight', count(q.in_flight));
      text(tr, '.dead', q.deadletters === null ? '?' : count(q.deadletters));
      tr.querySelector('.dead').classList.toggle('some', q.deadletters > 0);
      tr.dataset.deadletters = String(q.deadletters);
      tr.dataset.depth = String(q.depth);
      tr.querySelector('.redrive').disabled = !(q.deadletters > 0);
    });
    if (state.peek && queues.some((q) => q.name === state.peek)) peekQueue(state.peek, true);
  }

  async function peekQueue(name, quiet) {
    state.peek = name;
    const q = encodeURIComponent(name);
    try {
      const [waiting, dead] = await Promise.all([
        json(`queues/${q}/messages?max=20`),
        json(`queues/${q}/deadletter?max=50`),
      ]);
      if (state.peek !== name) return;
      const detail = el('div', 'detail card');
      detail.id = 'queue-detail';
      detail.dataset.queue = name;
      const close = el('button', 'secondary', 'Close');
      close.type = 'button';
      close.addEventListener('click', () => { state.peek = null; $('#queue-detail').replaceChildren(); });
      const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
      const head = el('h3', null, `${name}: ${plural(dead.length, 'dead letter')}, ${plural(waiting.length, 'waiting message')} shown `);
      head.append(close);
      detail.append(head);
      detail.append(messageTable('dead-letters', dead, true), messageTable('waiting', waiting, false));
      $('#queue-detail').replaceWith(detail);
    } catch (e) {
      if (!quiet) note(`cannot peek ${name}: ${e.message}`, true);
    }
  }

  function messageTable(cls, messages, dead) {
    const wrap = el('div', cls);
    wrap.append(el('h3', null, dead ? 'Dead letters' : 'Waiting messages'));
    if (!messages.length) {
      wrap.append(el('p', 'muted', dead ? 'No dead letters.' : 'No waiting messages.'));
      return wrap;
    }
    const table = el('table', 'grid');
    const head = el('tr');
    for (const h of dead ? ['id', 'attempts', 'reason', 'dead-lettered', 'body'] : ['id', 'attempt', 'enqueued', 'body']) head.append(el('th', null, h));
    table.append(el('thead'), el('tbody'));
    table.tHead.append(head);
    for (const m of messages) {
      const tr = el('tr');
      tr.append(el('td', 'mono', shortEvent(m.id)));
      if (dead) {
        tr.append(el('td', 'num', count(m.attempts)), el('td', null, m.reason), el('td', 'mono', clock(new Date(m.dead_lettered_at), true)));
      } else {
        tr.append(el('td', 'num', count(m.attempt)), el('td', 'mono', clock(new Date(m.enqueued_at), true)));
      }
      tr.append(el('td', 'mono body', m.body.length > 300 ? m.body.slice(0, 300) + '…' : m.body));
      table.tBodies[0].append(tr);
    }
    wrap.append(table);
    return wrap;
  }

  async function redriveQueue(name, button) {
    button.disabled = true;
    try {
      const r = await json(`queues/${encodeURIComponent(name)}/deadletter/redrive`, { method: 'POST' });
      note(`Redrove ${r.redriven} dead letter${r.redriven === 1 ? '' : 's'} of ${name} back onto the queue.`);
    } catch (e) {
      note(`cannot redrive ${name}: ${e.message}`, true);
    }
    tick();
  }

  function note(message, bad) {
    const p = $('#queue-message');
    p.textContent = message;
    p.classList.toggle('bad', !!bad);
  }

  // ── Streams, timers, gateway, cluster ────────────────────────────────
  function renderStreams(streams) {
    $('#stream-empty').hidden = streams.length > 0;
    $('#stream-table').hidden = streams.length === 0;
    sync($('#stream-table tbody'), streams, (s) => `${s.stream}/${s.function}`, (s) => {
      const tr = el('tr');
      tr.dataset.stream = s.stream;
      tr.append(el('td', 'mono', s.stream), el('td', null, s.function), el('td', 'num total'), el('td', 'partitions'));
      return tr;
    }, (tr, s) => {
      const parts = s.partitions || [];
      text(tr, '.total', s.partitions ? count(parts.reduce((a, p) => a + (p.lag || 0), 0)) : '?');
      const chips = el('div', 'chips');
      for (const p of parts) {
        const chip = el('span', `chip${p.lag > 0 ? ' behind' : ''}`, `p${p.partition}: ${p.lag === null ? '?' : p.lag} behind (next ${p.next === null ? '?' : p.next})`);
        chips.append(chip);
      }
      tr.querySelector('.partitions').replaceChildren(chips);
    });
  }

  function renderTimers(timers) {
    $('#timer-empty').hidden = timers.length > 0;
    $('#timer-table').hidden = timers.length === 0;
    sync($('#timer-table tbody'), timers, (t) => t.function, (t) => {
      const tr = el('tr');
      tr.append(el('td', null, t.function), el('td', 'mono', t.schedule), el('td', null, t.time_zone), el('td', 'last'), el('td', 'next'));
      return tr;
    }, (tr, t) => {
      text(tr, '.last', t.last ? `${clock(new Date(t.last))} (${relative(t.last)})` : 'never');
      text(tr, '.next', t.next ? `${clock(new Date(t.next))} (${relative(t.next)})` : '–');
    });
  }

  function renderGateway(g) {
    const on = !!(g && g.configured && g.routes);
    $('#gateway-empty').hidden = on;
    $('#gateway-body').hidden = !on;
    if (!on) return;
    sync($('#route-table tbody'), g.routes, (r) => r.name, (r) => {
      const tr = el('tr');
      tr.append(el('td', null, r.name));
      for (let i = 0; i < 8; i++) tr.append(el('td', 'num'));
      return tr;
    }, (tr, r) => {
      const values = [r.requests, r.responses.success, r.responses.client_error, r.responses.server_error,
        r.auth_failures, r.rate_limited, r.breaker_rejected, r.timeouts];
      values.forEach((v, i) => { tr.cells[i + 1].textContent = count(v); });
    });
    $('#upstream-table').hidden = g.upstreams.length === 0;
    sync($('#upstream-table tbody'), g.upstreams, (u) => u.url, (u) => {
      const tr = el('tr');
      tr.append(el('td', 'mono', u.url), el('td', 'breaker'), el('td', 'num calls'), el('td', 'num failures'), el('td', 'num window'), el('td', 'num opened'));
      return tr;
    }, (tr, u) => {
      const b = u.breaker;
      const badge = el('span', `badge ${b.state}`, b.state + (b.state === 'open' && b.open_remaining_ms ? ` ${Math.ceil(b.open_remaining_ms / 1000)} s` : ''));
      tr.querySelector('.breaker').replaceChildren(badge);
      text(tr, '.calls', count(u.calls));
      text(tr, '.failures', count(u.failures));
      text(tr, '.window', `${b.window_failures}/${b.window_calls} failed`);
      text(tr, '.opened', count(b.opened_total));
    });
  }

  // A cluster node answers `/_gust/cluster/status` at its root with the
  // same admin key; a single host or a `gust up` front does not.
  async function renderCluster() {
    let status;
    try {
      const r = await fetch(new URL('/_gust/cluster/status', location.href), { headers: { 'x-gust-key': state.key }, cache: 'no-store' });
      if (!r.ok) throw new Error(String(r.status));
      status = await r.json();
      if (!Array.isArray(status.nodes)) throw new Error('not a cluster');
    } catch (_) {
      state.cluster = false;
      return;
    }
    $('#cluster').hidden = false;
    $('#nav-cluster').hidden = false;
    $('#cluster-name').textContent = status.cluster;
    sync($('#node-table tbody'), status.nodes, (n) => n.id, (n) => {
      const tr = el('tr');
      tr.append(el('td', 'mono id'), el('td', 'mono', n.address), el('td', 'num beat'), el('td', 'apps'), el('td', 'owns'));
      return tr;
    }, (tr, n) => {
      text(tr, '.id', n.id + (n.this_node ? ' (this node)' : ''));
      text(tr, '.beat', `${num(n.seconds_since_heartbeat)} s ago`);
      text(tr, '.apps', n.apps ? JSON.stringify(n.apps) : '');
      text(tr, '.owns', n.owns ? JSON.stringify(n.owns) : '');
    });
  }

  // ── Small helpers ────────────────────────────────────────────────────
  function el(tag, cls, content) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined && content !== null) e.textContent = content;
    return e;
  }

  function text(root, sel, value) {
    const e = root.querySelector(sel);
    if (e && e.textContent !== value) e.textContent = value;
  }

  // Keeps one row per item in `body`, in the items' order, creating rows
  // once (so buttons and selections survive polls) and updating them.
  function sync(body, items, key, create, update) {
    const rows = new Map([...body.rows].map((r) => [r.dataset.key, r]));
    const keep = new Set();
    let at = 0;
    for (const item of items) {
      const k = key(item);
      keep.add(k);
      let row = rows.get(k);
      if (!row) {
        row = create(item);
        row.dataset.key = k;
      }
      if (update) update(row, item);
      if (body.rows[at] !== row) body.insertBefore(row, body.rows[at] || null);
      at++;
    }
    for (const [k, row] of rows) if (!keep.has(k)) row.remove();
  }

  const count = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en'));
  const num = (n) => (n === null || n === undefined ? '–' : n >= 100 ? Math.round(n).toString() : n >= 10 ? n.toFixed(1) : n.toFixed(2).replace(/\.?0+$/, '') || '0');
  const short = (id) => (id || '').slice(0, 8);
  // Event ids are queue sequence numbers (zero-padded) or random hex.
  const shortEvent = (id) => (id.length > 20 ? id.slice(0, 8) + '…' : id.replace(/^0+(?=.)/, ''));

  function ms(v) {
    if (v === null || v === undefined) return '–';
    if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
    if (v >= 100) return `${Math.round(v)} ms`;
    if (v >= 1) return `${v.toFixed(1)} ms`;
    return `${v.toFixed(2)} ms`;
  }

  function clock(d, millis) {
    const p = (n, w = 2) => String(n).padStart(w, '0');
    const t = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    return millis ? `${t}.${p(d.getMilliseconds(), 3)}` : t;
  }

  function duration(seconds) {
    if (seconds < 60) return `${seconds} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  }

  function relative(iso) {
    const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
    const a = Math.abs(s);
    const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : `${Math.round(a / 3600)} h`;
    return s >= 0 ? `in ${span}` : `${span} ago`;
  }

  // ── Start ────────────────────────────────────────────────────────────
  document.addEventListener('DOMContentLoaded', () => {
    $('#login-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const key = $('#key').value.trim();
      if (!key) return;
      $('#login-error').textContent = '';
      $('#login-button').disabled = true;
      try {
        await signIn(key);
        $('#key').value = '';
      } catch (err) {
        if (err.message !== 'unauthorized') signOut(`Cannot sign in: ${err.message}`);
      } finally {
        $('#login-button').disabled = false;
      }
    });
    $('#logout').addEventListener('click', () => signOut());
    $('#inv-filter').addEventListener('change', (e) => {
      state.filter = e.target.value;
      tick();
    });
    if (state.key) {
      signIn(state.key).catch((err) => { if (err.message !== 'unauthorized') signOut(err.message); });
    } else {
      $('#key').focus();
    }
  });
})();
