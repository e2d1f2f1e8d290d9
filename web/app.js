// The live page's script: reads Server-Sent Events from /events and draws them with uPlot.
// Every value from the process goes into the page as text (textContent, dataset), never as
// markup: pair names come from the network.
/* global uPlot */

const PAGE_SIZE = 50;
const SPARK_SAMPLES = 60;
const $ = (selector) => document.querySelector(selector);

const state = {
  historySamples: 300,
  historySeconds: 300,
  times: [], // seconds, oldest first
  spreads: new Map(), // symbol -> (number|null)[] aligned with times
  rates: [[], []], // frames/s and acked/s (or records/s) aligned with times
  rows: [],
  sortKey: "symbol",
  sortDescending: false,
  filter: "",
  page: 0,
  selected: undefined,
  role: undefined,
};

const integer = (n) => n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US");
const perSecond = (n) => n === null || n === undefined ? "–" : n.toFixed(1);
const milliseconds = (n) => n === null || n === undefined ? "–" : n.toFixed(1);
const latencyPair = (p50, p99) => `${milliseconds(p50)} / ${milliseconds(p99)} ms`;
const share = (part, whole) => whole > 0 ? `${((part / whole) * 100).toFixed(2)}%` : "–";
const spreadText = (n) => n === null || n === undefined ? "–" : plainNumber(n);

/** A number as people write it, without an exponent: 1e-7 is shown as 0.0000001. */
function plainNumber(n) {
  const text = String(n);
  const m = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
  if (!m) return text;
  const [, sign, whole, fraction = "", exponent] = m;
  const digits = whole + fraction;
  const point = whole.length + Number(exponent);
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}
const STATES = ["disconnected", "connecting", "authenticating", "subscribing", "streaming"];

function setMetric(name, text) {
  const el = document.querySelector(`[data-metric="${name}"]`);
  if (el) el.textContent = text;
}

function fillTable(selector, entries) {
  const body = $(`${selector} tbody`);
  const rows = entries.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i > 0 && i === cells.length - 1) td.className = "num";
      tr.append(td);
    });
    return tr;
  });
  body.replaceChildren(...rows);
}

function chartSize(height) {
  return { width: Math.max(300, document.body.clientWidth - 40), height };
}

const rateChartEl = $("#rate-chart");
const spreadChartEl = $("#spread-chart");
let rateChart;
let spreadChart;

function makeRateChart(labels) {
  rateChart?.destroy();
  const colours = ["#2b7bb9", "#d9822b"];
  rateChart = new uPlot(
    {
      ...chartSize(180),
      title: "throughput",
      scales: { x: { time: true } },
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: colours[i],
          width: 1.5,
          points: { show: false },
        })),
      ],
      axes: [{}, { label: "per second", size: 60 }],
    },
    [[], ...labels.map(() => [])],
    rateChartEl,
  );
}

function makeSpreadChart() {
  spreadChart = new uPlot(
    {
      ...chartSize(260),
      scales: { x: { time: true } },
      series: [
        {},
        { label: "spread", stroke: "#1a7f37", width: 1.5, spanGaps: true, points: { show: false } },
      ],
      axes: [{}, { size: 70 }],
    },
    [[], []],
    spreadChartEl,
  );
}

function sparkline(el) {
  return new uPlot(
    {
      width: 120,
      height: 28,
      pxAlign: false,
      cursor: { show: false },
      legend: { show: false },
      select: { show: false },
      scales: { x: { time: false } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: "#2b7bb9", width: 1, spanGaps: true, points: { show: false } }],
    },
    [[], []],
    el,
  );
}

function drawSpreadChart() {
  if (!spreadChart) makeSpreadChart();
  const series = state.selected === undefined ? undefined : state.spreads.get(state.selected);
  $("#chart-title").textContent = state.selected === undefined
    ? "pick a symbol in the table to chart its spread"
    : `spread of ${state.selected} over the last ${Math.round(state.historySeconds / 60)} minutes`;
  spreadChart.setData([state.times, series ?? state.times.map(() => null)]);
}

function drawRateChart() {
  if (!rateChart) return;
  const lines = state.role === "producer" ? state.rates : state.rates.slice(0, 1);
  rateChart.setData([state.times, ...lines]);
}

function pushHistory(t, update) {
  state.times.push(t);
  const drop = state.times.length > state.historySamples;
  if (drop) state.times.shift();
  const seen = new Set();
  for (const [symbol, spread] of update.symbols) {
    seen.add(symbol);
    let series = state.spreads.get(symbol);
    if (!series) {
      series = new Array(state.times.length - 1).fill(null);
      state.spreads.set(symbol, series);
    } else if (drop) series.shift();
    series.push(spread);
  }
  for (const [symbol, series] of state.spreads) {
    if (seen.has(symbol)) continue;
    if (drop) series.shift();
    series.push(null);
  }
  const p = update.pipeline;
  const c = update.consumer;
  const st = update.store;
  state.rates[0].push(p ? p.framesPerSec : c ? c.recordsPerSec : st ? st.recordsPerSec : null);
  state.rates[1].push(p ? p.ackedPerSec : st ? st.rowsPerSec : null);
  if (drop) { for (const r of state.rates) r.shift(); }
}

function applyInit(init) {
  state.historySamples = init.historySamples;
  state.historySeconds = init.historySeconds;
  state.times = init.times.map((t) => t / 1000);
  state.spreads = new Map(Object.entries(init.spreads));
  state.rates = [state.times.map(() => null), state.times.map(() => null)];
}

function showHealth(health) {
  const badge = $("#health");
  if (!health) {
    badge.dataset.state = "unknown";
    badge.textContent = "no health inputs";
    $("#health-message").textContent = "";
    return;
  }
  badge.dataset.state = health.status;
  badge.textContent = health.status === "ok"
    ? "healthy"
    : health.status === "standby"
    ? "standby"
    : `unhealthy: ${health.reasons.join(", ")}`;
  $("#health-message").textContent = health.message;
  showFailover(health);
}

/** With --standby-group: the role, the takeovers and the time of the last one. */
function showFailover(health) {
  const f = health.failover;
  $("#failover-card").hidden = !f;
  if (!f) return;
  setMetric("failoverRole", health.role ?? "");
  const last = f.lastTakeoverAt
    ? `, last ${new Date(f.lastTakeoverAt).toISOString().slice(11, 19)} UTC`
    : "";
  setMetric("failoverTakeovers", `${integer(f.takeovers)} takeovers${last}`);
}

function showPipeline(p) {
  $("#pipeline").hidden = false;
  setMetric("framesPerSec", perSecond(p.framesPerSec));
  setMetric("framesTotal", `${integer(p.framesTotal)} frames`);
  setMetric("ackedPerSec", perSecond(p.ackedPerSec));
  setMetric("ackedTotal", `${integer(p.ackedTotal)} records`);
  setMetric("queueDepth", integer(p.queueDepth));
  setMetric("queueDropped", `${integer(p.queueDropped)} frames dropped`);
  setMetric("receiveToAck", latencyPair(p.receiveToAckP50Ms, p.receiveToAckP99Ms));
  setMetric("connectionState", STATES[p.connectionState] ?? String(p.connectionState));
  const reconnects = Object.values(p.reconnects).reduce((a, b) => a + b, 0);
  setMetric("reconnectsTotal", `${integer(reconnects)} reconnects`);
  setMetric("gapsTotal", integer(p.gapsTotal));
  setMetric("gapSeconds", `${p.gapSeconds.toFixed(1)} s not listening`);
  fillTable("#skips", Object.entries(p.skips).map(([k, v]) => [k, integer(v)]));
  fillTable("#reconnects", Object.entries(p.reconnects).map(([k, v]) => [k, integer(v)]));
  fillTable(
    "#gaps",
    p.gaps.slice().reverse().map((g) => [
      g.reason,
      new Date(g.from).toISOString().replace("T", " ").slice(0, 23),
      `${(g.ms / 1000).toFixed(1)} s`,
    ]),
  );
}

function showConsumer(c) {
  $("#consumer").hidden = false;
  setMetric("recordsPerSec", perSecond(c.recordsPerSec));
  setMetric("recordsTotal", `${integer(c.recordsTotal)} records`);
  setMetric("malformed", integer(c.malformed));
  setMetric("kafkaToConsumer", latencyPair(c.kafkaToConsumerP50Ms, c.kafkaToConsumerP99Ms));
  fillTable("#lag", Object.entries(c.lag).map(([k, v]) => [k, integer(v)]));
}

/** The history store (store.ts): rows written, dead letters, write latency, lag. */
function showStore(st) {
  $("#store").hidden = false;
  setMetric("storeRecordsPerSec", perSecond(st.recordsPerSec));
  setMetric("storeRecordsTotal", `${integer(st.recordsTotal)} records`);
  setMetric("storeRowsPerSec", perSecond(st.rowsPerSec));
  setMetric(
    "storeRowsTotal",
    Object.entries(st.rows).map(([k, v]) => `${k} ${integer(v)}`).join(", "),
  );
  const dead = Object.values(st.deadLetters).reduce((a, b) => a + b, 0);
  setMetric("storeDeadLetters", integer(dead));
  setMetric("storeWrite", latencyPair(st.writeP50Ms, st.writeP99Ms));
  setMetric("storeDatabase", st.databaseUp ? "answering" : "down: retrying, consuming paused");
  fillTable("#store-dead", Object.entries(st.deadLetters).map(([k, v]) => [k, integer(v)]));
  fillTable("#store-lag", Object.entries(st.lag).map(([k, v]) => [k, integer(v)]));
}

const SORTERS = {
  symbol: (a, b) => a.symbol.localeCompare(b.symbol),
  spread: (a, b) => (a.spread ?? -Infinity) - (b.spread ?? -Infinity),
  rate: (a, b) => (a.rate ?? -1) - (b.rate ?? -1),
  quotes: (a, b) => a.quotes - b.quotes,
  crossed: (a, b) => a.crossedShare - b.crossedShare,
  locked: (a, b) => a.lockedShare - b.lockedShare,
};

const sparks = []; // one uPlot per visible row, reused
function drawTable() {
  const needle = state.filter.toLowerCase();
  const rows = state.rows.filter((r) => r.symbol.toLowerCase().includes(needle));
  const sorter = SORTERS[state.sortKey];
  rows.sort((a, b) => state.sortDescending ? sorter(b, a) : sorter(a, b));
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const visible = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  $("#page").textContent = `page ${state.page + 1} of ${pages}`;
  const body = $("#symbol-table tbody");
  while (body.rows.length > visible.length) body.deleteRow(-1);
  const sparkTimes = state.times.slice(-SPARK_SAMPLES);
  visible.forEach((row, i) => {
    let tr = body.rows[i];
    if (!tr) {
      tr = body.insertRow();
      for (const name of ["symbol", "spread", "spark", "rate", "quotes", "crossed", "locked"]) {
        const td = tr.insertCell();
        td.className = `c-${name}${name === "symbol" || name === "spark" ? "" : " num"}`;
      }
      tr.addEventListener("click", () => {
        state.selected = tr.dataset.symbol;
        drawSpreadChart();
        drawTable();
      });
    }
    tr.dataset.symbol = row.symbol;
    tr.classList.toggle("selected", row.symbol === state.selected);
    const cells = tr.cells;
    cells[0].textContent = row.symbol;
    cells[1].textContent = spreadText(row.spread);
    cells[3].textContent = perSecond(row.rate);
    cells[4].textContent = integer(row.quotes);
    cells[5].textContent = share(row.crossed, row.quotes);
    cells[6].textContent = share(row.locked, row.quotes);
    if (!sparks[i]) sparks[i] = sparkline(cells[2]);
    const series = state.spreads.get(row.symbol) ?? [];
    sparks[i].setData([sparkTimes.map((_, k) => k), series.slice(-SPARK_SAMPLES)]);
  });
  for (let i = visible.length; i < sparks.length; i++) {
    sparks[i]?.destroy();
    sparks[i] = undefined;
  }
}

function applyUpdate(update) {
  if (update.role !== state.role) {
    state.role = update.role;
    $("#role").textContent = update.role;
    if (update.role === "producer") {
      $("#pipeline").hidden = false;
      makeRateChart(["frames/s in", "records acked/s"]);
    } else if (update.role === "consumer") {
      $("#consumer").hidden = false;
      $("#consumer .cards").after(rateChartEl);
      makeRateChart(["records/s"]);
    } else if (update.role === "store") {
      $("#store").hidden = false;
      $("#store .cards").after(rateChartEl);
      makeRateChart(["records/s read", "rows written/s"]);
    }
  }
  pushHistory(update.t / 1000, update);
  showHealth(update.health);
  if (update.pipeline) showPipeline(update.pipeline);
  if (update.consumer) showConsumer(update.consumer);
  if (update.store) showStore(update.store);
  state.rows = update.symbols.map(([symbol, spread, quotes, rate, crossed, locked]) => ({
    symbol,
    spread,
    quotes,
    rate,
    crossed,
    locked,
    crossedShare: quotes > 0 ? crossed / quotes : 0,
    lockedShare: quotes > 0 ? locked / quotes : 0,
  }));
  if (state.selected === undefined && state.rows.length > 0) {
    state.selected = state.rows.reduce((a, b) => b.quotes > a.quotes ? b : a).symbol;
  }
  const omitted = update.symbolsOmitted > 0 ? `, ${update.symbolsOmitted} not shown` : "";
  $("#symbol-count").textContent = `(${state.rows.length}${omitted})`;
  drawTable();
  drawSpreadChart();
  drawRateChart();
  showTrades(update);
  showBars(update);
  const stream = $("#stream");
  stream.dataset.t = String(update.t);
  stream.textContent = `updated ${new Date(update.t).toISOString().slice(11, 19)} UTC`;
  $("#ui-stats").textContent = `${update.ui.clients} page(s) open, ` +
    `${integer(update.ui.updatesDropped)} updates dropped for slow pages`;
}

/** Fills a table whose cells after the first `left` are numbers (right-aligned). */
function fillNumbers(selector, rows, left) {
  const body = $(`${selector} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.dataset.symbol = cells[0];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i >= left) td.className = "num";
      tr.append(td);
    });
    return tr;
  }));
}

// Channel XT: trades per second and each symbol's last price.
function showTrades(update) {
  if (!update.trades) return;
  $("#trades").hidden = false;
  $("#trades-rate").textContent = `(${perSecond(update.tradesPerSec)} trades/s)`;
  fillNumbers(
    "#trade-table",
    update.trades.map(([symbol, price, n, rate]) => [
      symbol,
      spreadText(price),
      perSecond(rate),
      integer(n),
    ]),
    1,
  );
}

// Channel XA: each symbol's last minute bar.
function showBars(update) {
  if (!update.bars) return;
  $("#bars").hidden = false;
  fillNumbers(
    "#bar-table",
    update.bars.map(([symbol, close, volume, start, n]) => [
      symbol,
      start === null ? "–" : new Date(start).toISOString().slice(0, 16).replace("T", " "),
      spreadText(close),
      spreadText(volume),
      integer(n),
    ]),
    2,
  );
}

for (const th of document.querySelectorAll("#symbol-table th[data-sort]")) {
  const key = ["symbol", "spread", "quotes", "rate", "crossed", "locked"][Number(th.dataset.sort)];
  th.addEventListener("click", () => {
    state.sortDescending = state.sortKey === key ? !state.sortDescending : key !== "symbol";
    state.sortKey = key;
    drawTable();
  });
}
$("#filter").addEventListener("input", (e) => {
  state.filter = e.target.value;
  state.page = 0;
  drawTable();
});
$("#prev").addEventListener("click", () => {
  state.page = Math.max(0, state.page - 1);
  drawTable();
});
$("#next").addEventListener("click", () => {
  state.page++;
  drawTable();
});

addEventListener("resize", () => {
  rateChart?.setSize(chartSize(180));
  spreadChart?.setSize(chartSize(260));
});

const events = new EventSource("/events");
events.addEventListener("init", (e) => applyInit(JSON.parse(e.data)));
events.addEventListener("update", (e) => applyUpdate(JSON.parse(e.data)));
events.addEventListener("error", () => {
  $("#stream").textContent = "disconnected; retrying…";
});
