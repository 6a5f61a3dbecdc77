// The benchmark workload: batches of 10 realistic tracker events (PROTOCOL.md §3.1) from a fixed
// seed, pre-split into string parts so that the load generator only splices in `seq` and `ts`
// per send. Building a message is then a handful of string concatenations, which keeps the
// client cheap enough not to be the bottleneck even against the Node floor.

export const BATCH = 10;

// The demo shop's grid (docs/ARCHITECTURE.md "Demo markup contract"): 8 products p1..p8 tagged
// from the contract's tag list. Popularity is skewed so interest concentrates the way it does on
// a real page, and hover intents cross the emphasis threshold for some items, not all.
export const ITEMS = [
  { key: "p1", tags: ["sneakers", "running"], weight: 8 },
  { key: "p2", tags: ["sneakers", "sale"], weight: 5 },
  { key: "p3", tags: ["outdoor", "running"], weight: 4 },
  { key: "p4", tags: ["watches", "luxury"], weight: 3 },
  { key: "p5", tags: ["watches", "sale"], weight: 2 },
  { key: "p6", tags: ["bags", "luxury"], weight: 2 },
  { key: "p7", tags: ["bags", "outdoor"], weight: 1 },
  { key: "p8", tags: ["watches", "luxury", "sale"], weight: 1 },
];

// mulberry32: a tiny seeded PRNG, so every run sends byte-identical payload templates.
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pickItem(rand) {
  const total = ITEMS.reduce((s, it) => s + it.weight, 0);
  let x = rand() * total;
  for (const it of ITEMS) if ((x -= it.weight) < 0) return it;
  return ITEMS[ITEMS.length - 1];
}

const int = (rand, lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

function viewEvent() {
  return {
    url: "/shop", title: "Shop",
    items: ITEMS.map((it) => ({ key: it.key, tags: it.tags, slot: "grid" })),
  };
}

// One event without `k`/`ts` (they are spliced in first, in that order). The mix follows what the
// tracker sends while a visitor browses a grid: many scroll and dwell updates, hover passes, and
// the occasional intent and click.
function randomEvent(rand) {
  const x = rand();
  const it = pickItem(rand);
  if (x < 0.18) return ["hover", { item: it.key, tags: it.tags, dur: int(rand, 2000, 3500), phase: "intent" }];
  if (x < 0.38) return ["hover", { item: it.key, tags: it.tags, dur: int(rand, 300, 5000), phase: "end" }];
  if (x < 0.68) return ["scroll", { depth: int(rand, 5, 100), speed: int(rand, 80, 2500), dir: rand() < 0.8 ? "down" : "up" }];
  if (x < 0.97) return ["dwell", { item: it.key, tags: it.tags, ms: int(rand, 500, 8000) }];
  return ["click", { item: it.key, tags: it.tags }];
}

// A batch template: parts[0] ts0 parts[1] ts1 ... ts9 parts[10], where the first part begins
// right after `"events":[`. tsBack[i] is how long before the send event i happened (the tracker
// batches what happened during its flush interval, default 500 ms).
function template(rand, withView) {
  const events = [];
  if (withView) events.push(["view", viewEvent()]);
  while (events.length < BATCH) events.push(randomEvent(rand));
  const parts = [];
  const tsBack = [];
  let pending = "";
  let back = 500;
  for (const [k, rest] of events) {
    parts.push(`${pending}{"k":"${k}","ts":`);
    pending = `,${JSON.stringify(rest).slice(1)},`;
    back = Math.max(0, back - int(rand, 10, 50));
    tsBack.push(back);
  }
  parts.push(`${pending.slice(0, -1)}]}`);
  return { parts, tsBack };
}

// The shared pool: template 0 opens a page view (every session's first batch); about 2% of the
// rest carry a view too (the visitor navigates).
export function makePool(seed, size = 512) {
  const rand = rng(seed);
  const pool = [template(rand, true)];
  for (let i = 1; i < size; i++) pool.push(template(rand, rand() < 0.02));
  return pool;
}

// The full text frame for a template at sequence number `seq`, events stamped relative to `nowMs`.
export function render(tpl, seq, nowMs) {
  const { parts, tsBack } = tpl;
  let s = `{"t":"events","seq":${seq},"events":[${parts[0]}`;
  for (let i = 0; i < tsBack.length; i++) s += (nowMs - tsBack[i]) + parts[i + 1];
  return s;
}

export function hello(site, vid, sid) {
  return JSON.stringify({
    t: "hello", v: 1, site, vid, sid, consent: "granted",
    page: { url: "/shop", title: "Shop", ref: "", vw: 1280, vh: 800 }, ack: 0, pseq: 0,
  });
}
