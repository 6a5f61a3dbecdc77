// The rule simulator page (served at /simulator by server/microadjust/simulator.py): runs a pasted
// rule set over a pasted event sequence with the server's engine under Pyodide and shows, step by
// step, which patches it would send and which it would revert. Everything user-supplied is shown
// with textContent, never as HTML: a rule set is untrusted input here too.
import { loadEngine, RuleSetError, EngineError } from "/pywasm/loader.mjs";

// PROTOCOL §3.1: the kinds the engine knows and the fields each one needs. The gateway answers an
// unknown kind with `unknown_event` and drops only that event; the simulator does the same.
const KINDS = {
  view: { url: "string" },
  hover: { dur: "int", phase: ["intent", "end"] },
  scroll: { depth: "depth", speed: "number" },
  dwell: { ms: "int" },
  click: {},
  custom: { name: "string" },
};
const MAX_BATCH = 100; // PROTOCOL §2.3 limits.batch: the gateway refuses bigger batches

const $ = (sel) => document.querySelector(sel);
const statusEl = $("#engine-status");

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

const enginePromise = loadEngine({ indexURL: "/pywasm/" }).then(
  (engine) => {
    const s = (engine.timings.bootMs + engine.timings.loadMs) / 1000;
    statusEl.textContent = `Engine ready: microadjust ${engine.version} on Pyodide (${s.toFixed(1)} s to load).`;
    statusEl.dataset.state = "ready";
    return engine;
  },
  (err) => {
    statusEl.textContent = `The engine could not be loaded: ${err.message}`;
    statusEl.dataset.state = "failed";
    throw err;
  },
);

/** The parsed JSON, or a thrown [{path, msg}] with the line and column Python's parser reports. */
function parseJSON(engine, text, what) {
  if (!text.trim()) throw [{ path: what, msg: "is empty" }];
  const problem = engine.jsonError(text);
  if (problem) throw [{ path: what, msg: `invalid JSON: ${problem}` }];
  return JSON.parse(text);
}

function checkField(value, kind) {
  if (Array.isArray(kind)) return kind.includes(value) ? null : `must be one of ${kind.join(", ")}`;
  if (kind === "string") return typeof value === "string" && value ? null : "must be a non-empty string";
  if (kind === "int") return Number.isSafeInteger(value) && value >= 0 ? null : "must be a non-negative integer";
  if (kind === "number") return typeof value === "number" && Number.isFinite(value) && value >= 0 ? null : "must be a non-negative number";
  if (kind === "depth") return typeof value === "number" && value >= 0 && value <= 100 ? null : "must be a number from 0 to 100";
  return null;
}

/**
 * The sequence as engine input: steps of {now, events (with seq), consent}, plus notices for
 * events dropped the way the server would drop them. Throws a list of {path, msg} on bad input.
 */
export function prepareSequence(doc, defaultConsent) {
  const errors = [];
  const notices = [];
  const steps = Array.isArray(doc) ? doc : doc && typeof doc === "object" && Array.isArray(doc.steps) ? doc.steps : null;
  if (!steps) throw [{ path: "sequence", msg: 'must be a list of steps [{"now": ms, "events": [...]}] or an object with "steps"' }];
  if (steps.length === 0) throw [{ path: "sequence", msg: "has no steps" }];
  const profile = Array.isArray(doc) ? null : (doc.profile ?? null);
  let lastNow = -Infinity;
  let lastSeq = 0;
  const out = steps.map((step, i) => {
    const at = `steps[${i}]`;
    if (!step || typeof step !== "object" || Array.isArray(step)) {
      errors.push({ path: at, msg: "must be an object {now, events}" });
      return null;
    }
    if (!Number.isSafeInteger(step.now) || step.now < 0) errors.push({ path: `${at}.now`, msg: "must be an integer: ms since the epoch" });
    else if (step.now < lastNow) errors.push({ path: `${at}.now`, msg: `goes back in time (${step.now} < ${lastNow})` });
    else lastNow = step.now;
    const consent = step.consent ?? defaultConsent;
    if (!["granted", "denied", "pending"].includes(consent)) errors.push({ path: `${at}.consent`, msg: "must be granted, denied or pending" });
    const events = step.events ?? [];
    if (!Array.isArray(events)) {
      errors.push({ path: `${at}.events`, msg: "must be a list of events" });
      return null;
    }
    if (events.length > MAX_BATCH) errors.push({ path: `${at}.events`, msg: `has ${events.length} events; a batch carries at most ${MAX_BATCH}` });
    const kept = [];
    events.forEach((ev, j) => {
      const ep = `${at}.events[${j}]`;
      if (!ev || typeof ev !== "object" || Array.isArray(ev)) return errors.push({ path: ep, msg: "must be an object" });
      if (typeof ev.k !== "string") return errors.push({ path: `${ep}.k`, msg: "required: the event kind" });
      if (!Number.isSafeInteger(ev.ts) || ev.ts < 0) return errors.push({ path: `${ep}.ts`, msg: "must be an integer: ms since the epoch" });
      if (!(ev.k in KINDS)) return notices.push({ path: `${ep}.k`, msg: `unknown event kind "${ev.k}": the server drops this event (unknown_event)` });
      for (const [name, kind] of Object.entries(KINDS[ev.k])) {
        const problem = checkField(ev[name], kind);
        if (problem) errors.push({ path: `${ep}.${name}`, msg: problem });
      }
      // The gateway numbers events per session; a recording may leave that to us.
      const seq = ev.seq ?? lastSeq + 1;
      if (!Number.isSafeInteger(seq) || seq < 1) return errors.push({ path: `${ep}.seq`, msg: "must be a positive integer" });
      if (seq <= lastSeq) return notices.push({ path: `${ep}.seq`, msg: `seq ${seq} was already stored: the server drops it as a resend` });
      lastSeq = seq;
      kept.push({ ...ev, seq });
    });
    return { now: step.now, consent, events: kept, given: events.length };
  });
  if (errors.length) throw errors;
  return { profile, steps: out, notices };
}

/** Error paths inside the sequence are shown as `sequence.steps[i]...`. */
function inSequence(problem) {
  return problem.path.startsWith("steps") ? { ...problem, path: `sequence.${problem.path}` } : problem;
}

function showErrors(errors, title = "Errors") {
  const box = $("#errors");
  const list = $("#error-list");
  list.replaceChildren(...errors.map((e) => el("li", {}, el("span", { className: "path", textContent: e.path || "input" }), `: ${e.msg}${e.hint ? ` (${e.hint})` : ""}`)));
  box.querySelector("h2").textContent = title;
  box.hidden = errors.length === 0;
}

function describeEvent(ev) {
  const what = ev.item ?? ev.slot ?? ev.el ?? ev.name ?? ev.url ?? "";
  const extra = ev.k === "hover" ? ` ${ev.phase} ${ev.dur} ms` : ev.k === "dwell" ? ` ${ev.ms} ms` : ev.k === "scroll" ? ` ${ev.depth}%` : "";
  return `${ev.k} ${what}${extra}`.trim();
}

function renderPatch(patch, now, start) {
  const target = Object.entries(patch.target).map(([k, v]) => `${k}=${v}`).join(" ");
  const until = patch.ttl ? `, until +${((now + patch.ttl - start) / 1000).toFixed(1)} s` : "";
  return el(
    "div",
    { className: "patch" },
    el("span", { className: "id", textContent: patch.id }),
    el("span", { className: "muted", textContent: ` → ${target} (priority ${patch.priority}${until})` }),
    el("pre", { textContent: JSON.stringify(patch.ops, null, 1) }),
  );
}

async function simulate() {
  const runButton = $("#run");
  runButton.disabled = true;
  $("#results").hidden = true;
  showErrors([]);
  try {
    let rules;
    let sequence;
    const problems = [];
    const engine = await enginePromise;
    try {
      rules = parseJSON(engine, $("#rules").value, "rule set");
    } catch (e) {
      problems.push(...e);
    }
    try {
      sequence = prepareSequence(parseJSON(engine, $("#sequence").value, "event sequence"), $("#consent").value);
    } catch (e) {
      if (!Array.isArray(e)) throw e;
      problems.push(...e.map(inSequence));
    }
    if (rules !== undefined) problems.unshift(...engine.validate(rules).map((e) => ({ ...e, path: `rule set: ${e.path}` })));
    if (problems.length) return showErrors(problems, "The simulation cannot run");

    const rows = [];
    let profile = sequence.profile;
    let fired = 0;
    let engineMs = 0;
    const start = sequence.steps[0].now;
    for (const [i, step] of sequence.steps.entries()) {
      const t = performance.now();
      let result;
      try {
        result = engine.evaluate(profile, step.events, step.now, rules, { consent: step.consent });
      } catch (err) {
        if (err instanceof RuleSetError || err instanceof EngineError) return showErrors([{ path: `sequence.steps[${i}]`, msg: err.message }], "The engine refused this step");
        throw err;
      }
      engineMs += performance.now() - t;
      profile = result.profile;
      fired += result.patches.length;
      const changed = el("details", {}, el("summary", { textContent: `${result.changed.length}` }), el("pre", { textContent: result.changed.join("\n") }));
      const row = el(
        "tr",
        { className: result.patches.length ? "fired" : "" },
        el("td", { textContent: String(i) }),
        el("td", { textContent: `+${((step.now - start) / 1000).toFixed(1)} s`, title: new Date(step.now).toISOString() }),
        el("td", { textContent: step.events.map(describeEvent).join("\n") || "(no events: time passes)" }),
        el("td", {}, ...(result.patches.length ? result.patches.map((p) => renderPatch(p, step.now, start)) : [el("span", { className: "muted", textContent: "none" })])),
        el("td", { textContent: result.reverts.join("\n") }),
        el("td", {}, changed),
      );
      row.dataset.step = String(i);
      rows.push(row);
    }
    $("#timeline tbody").replaceChildren(...rows);
    $("#summary").textContent =
      `${fired} patch${fired === 1 ? "" : "es"} over ${rows.length} step${rows.length === 1 ? "" : "s"}; ` +
      `engine time ${engineMs.toFixed(1)} ms (${(engineMs / rows.length).toFixed(2)} ms per batch).`;
    $("#results").hidden = false;
    if (sequence.notices.length) showErrors(sequence.notices.map(inSequence), "Dropped as the server would");
  } catch (err) {
    showErrors([{ path: "simulator", msg: err?.message ?? String(err) }], "The simulation failed");
  } finally {
    runButton.disabled = false;
  }
}

async function loadInto(textarea, url) {
  const r = await fetch(url);
  if (!r.ok) return showErrors([{ path: url, msg: `HTTP ${r.status}` }]);
  $(textarea).value = JSON.stringify(await r.json(), null, 1);
}

$("#run").addEventListener("click", simulate);
$("#load-demo-rules").addEventListener("click", () => loadInto("#rules", "/pywasm/simulator/demo-rules.json"));
$("#load-example").addEventListener("click", () => loadInto("#sequence", "/pywasm/simulator/example-sequence.json"));
