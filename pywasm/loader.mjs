// The microadjust engine in the browser (and Node): boots Pyodide, loads the engine wheel built by
// `npm run build:pywasm`, and exposes the engine contract of docs/ARCHITECTURE.md with plain JSON
// in and out. The Python code that runs is the server's own `microadjust.engine`, unchanged, so
// a page gets the server's exact decisions without a round trip (docs/PYWASM.md).
//
//   import { loadEngine } from "/pywasm/loader.mjs";
//   const engine = await loadEngine({ indexURL: "/pywasm/" });
//   const { profile, patches, reverts, changed } = engine.evaluate(null, events, Date.now(), rulesDoc);
//
// Values cross the boundary as JSON text, never as proxies: Python's json module parses and
// encodes them exactly as on the server, and no PyProxy is left for the caller to destroy.

/** A rule set the engine refused; `errors` is `[{path, msg}]` as `compile_rules` reports them. */
export class RuleSetError extends Error {
  constructor(errors) {
    super(`rule set rejected: ${errors.map((e) => `${e.path}: ${e.msg}`).join("; ")}`);
    this.name = "RuleSetError";
    this.errors = errors;
  }
}

/** Bad input to `evaluate` (wrong types, unparseable JSON) or an error raised inside the engine. */
export class EngineError extends Error {
  constructor(message, detail) {
    super(message);
    this.name = "EngineError";
    this.detail = detail;
  }
}

// Runs once per Pyodide instance. Compiled rule sets are cached by their JSON text (the content),
// so a page that passes the same rules on every batch compiles them once; the cache is bounded
// because a simulator user may paste many versions of a rule set.
const BRIDGE = String.raw`
import json
from collections import OrderedDict

from microadjust.engine import RuleSetError, compile_rules, evaluate, feature_values
from microadjust.engine.vectors import canonical, run_vector
import microadjust

_RULESETS = OrderedDict()
_RULESET_CACHE_SIZE = 8


def _ruleset(rules_text):
    ruleset = _RULESETS.get(rules_text)
    if ruleset is None:
        ruleset = compile_rules(json.loads(rules_text))
        _RULESETS[rules_text] = ruleset
        if len(_RULESETS) > _RULESET_CACHE_SIZE:
            _RULESETS.popitem(last=False)
    else:
        _RULESETS.move_to_end(rules_text)
    return ruleset


def _answer(fn):
    # One JSON envelope for every outcome, so the JS side never parses a Python traceback.
    try:
        return canonical({"ok": fn()})
    except RuleSetError as exc:
        return canonical({"rules": exc.errors})
    except json.JSONDecodeError as exc:
        return canonical({"error": f"invalid JSON: {exc}"})
    except Exception as exc:
        return canonical({"error": f"{type(exc).__name__}: {exc}"})


def ma_evaluate(profile_text, events_text, now, rules_text, consent):
    # The new profile's own canonical text comes first, before a newline (canonical JSON never
    # contains a raw one), so JS can hand back exactly these bytes on the next batch.
    holder = {}

    def run():
        result = evaluate(json.loads(profile_text), json.loads(events_text), now, _ruleset(rules_text), consent)
        holder["profile"] = canonical(result["profile"])
        return result

    answer = _answer(run)
    return holder.get("profile", "") + "\n" + answer


def ma_validate(rules_text):
    def check():
        _ruleset(rules_text)
        return []
    return _answer(check)


def ma_features(profile_text, names_text, now, rules_text):
    return _answer(lambda: feature_values(json.loads(profile_text), json.loads(names_text), now, _ruleset(rules_text)))


def ma_run_vector(vector_text, rules_text):
    return _answer(lambda: run_vector(json.loads(vector_text), json.loads(rules_text) if rules_text else None))


def ma_json_error(text):
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return str(exc)
    return ""


ma_version = microadjust.__version__
`;

const CONSENTS = new Set(["granted", "denied", "pending"]);

function isNode() {
  return typeof process !== "undefined" && !!process.versions?.node;
}

/** Where pyodide.mjs lives, as something `import()` accepts in this runtime. */
async function moduleURL(indexURL, file) {
  if (isNode() && !/^[a-z]+:\/\//i.test(indexURL)) {
    const { pathToFileURL } = await import("node:url");
    return pathToFileURL(indexURL + file).href;
  }
  return new URL(file, new URL(indexURL, globalThis.location?.href)).href;
}

function toText(value, what) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw new EngineError(`${what} is not JSON-serialisable: ${err.message}`);
  }
}

function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function unwrap(answerText) {
  const answer = JSON.parse(answerText);
  if ("rules" in answer) throw new RuleSetError(answer.rules);
  if ("error" in answer) throw new EngineError(answer.error);
  return answer.ok;
}

/**
 * Boots Pyodide from `indexURL` (pywasm/dist/, served at /pywasm/ by the server) and loads the
 * engine: from `wheelURL` when given, else the `microadjust-engine` entry of the lockfile there.
 * Returns the engine API; every method is synchronous once loaded.
 */
export async function loadEngine({ indexURL, wheelURL, loadPyodide } = {}) {
  if (typeof indexURL !== "string" || !indexURL) throw new EngineError("loadEngine: indexURL (the pywasm/dist/ URL) is required");
  if (!indexURL.endsWith("/")) indexURL += "/";
  const started = performance.now();
  if (!loadPyodide) ({ loadPyodide } = await import(await moduleURL(indexURL, "pyodide.mjs")));
  // checkAPIVersion guards against a loader paired with another Pyodide's runtime files.
  const pyodide = await loadPyodide({ indexURL, checkAPIVersion: true, stdout: () => {}, stderr: () => {} });
  const booted = performance.now();
  await pyodide.loadPackage(wheelURL || "microadjust-engine", { messageCallback: () => {}, errorCallback: () => {} });
  const bridge = pyodide.globals.get("dict")();
  pyodide.runPython(BRIDGE, { globals: bridge });
  // One proxy per bridge function, kept for the engine's lifetime (no per-call proxy to destroy).
  const fns = Object.fromEntries(["ma_evaluate", "ma_validate", "ma_features", "ma_run_vector", "ma_json_error"].map((n) => [n, bridge.get(n)]));
  const call = (name, ...args) => unwrap(fns[name](...args));
  const version = bridge.get("ma_version");
  const loaded = performance.now();

  // JSON.parse turns the engine's 0.0 into 0, so a profile that went through JS would come back
  // as different bytes (the decisions stay the same; the parity test proves both). Profiles this
  // loader returned map to their exact text, so carrying them from batch to batch is lossless.
  const exactProfiles = new WeakMap();

  function profileText(profile) {
    if (profile === null || profile === undefined) return "null";
    if (typeof profile === "string") return profile;
    if (typeof profile !== "object" || Array.isArray(profile)) {
      throw new EngineError("profile must be an object (a stored profile) or null (a new visitor)");
    }
    return exactProfiles.get(profile) ?? toText(profile, "profile");
  }

  function evaluateTexts(profile, events, now, rules, consent) {
    if (!Array.isArray(events) && typeof events !== "string") throw new EngineError("events must be an array of event objects");
    checkNow(now);
    if (!CONSENTS.has(consent)) throw new EngineError(`consent must be one of granted, denied, pending, got ${JSON.stringify(consent)}`);
    const answer = fns.ma_evaluate(profileText(profile), toText(events, "events"), now, toText(rules, "rules"), consent);
    const cut = answer.indexOf("\n");
    const envelope = answer.slice(cut + 1);
    unwrap(envelope);
    // Strip the envelope textually: the inner text stays the engine's canonical encoding.
    return [answer.slice(0, cut), envelope.slice('{"ok":'.length, -1)];
  }

  function checkNow(now) {
    if (!Number.isSafeInteger(now) || now < 0) throw new EngineError(`now must be integer ms since the epoch, got ${JSON.stringify(now)}`);
  }

  return {
    version,
    pyodide,
    timings: { bootMs: booted - started, loadMs: loaded - booted },

    /**
     * The engine contract: (profile | null, events[], now ms, rules doc) -> {profile, patches,
     * reverts, changed}. `rules` may be the parsed rules JSON or its text; compiled once per content.
     * The returned profile is frozen: pass it back as is on the next batch (it stands for the
     * engine's exact bytes, see `profileText`); a profile parsed from elsewhere is sent as JSON.
     */
    evaluate(profile, events, now, rules, { consent = "granted" } = {}) {
      const [profileText, resultText] = evaluateTexts(profile, events, now, rules, consent);
      const result = JSON.parse(resultText);
      result.profile = deepFreeze(result.profile);
      exactProfiles.set(result.profile, profileText);
      return result;
    },

    /** Like `evaluate` but returns the engine's canonical JSON text (what parity tests compare). */
    evaluateJSON(profile, events, now, rules, { consent = "granted" } = {}) {
      return evaluateTexts(profile, events, now, rules, consent)[1];
    },

    /** Compiles `rules` and returns [] or the `[{path, msg}]` errors (it never throws for bad rules). */
    validate(rules) {
      try {
        call("ma_validate", toText(rules, "rules"));
        return [];
      } catch (err) {
        if (err instanceof RuleSetError) return err.errors;
        if (err instanceof EngineError) return [{ path: "", msg: err.message }];
        throw err;
      }
    },

    /** Current values of the named features (`session.scroll.speed`, ...) of a stored profile. */
    features(profile, names, now, rules) {
      checkNow(now);
      return call("ma_features", profileText(profile), toText(names, "names"), now, toText(rules, "rules"));
    },

    /**
     * Why `text` is not JSON, as Python's json module (the server's parser) says it, with line
     * and column ("Expecting value: line 2 column 14 (char 27)"); "" when it is valid JSON.
     */
    jsonError(text) {
      return fns.ma_json_error(String(text));
    },

    /** Runs an engine vector file (protocol/vectors/engine/) through `run_vector`; canonical JSON text. */
    runVectorJSON(vectorText, rulesText = null) {
      const answer = fns.ma_run_vector(vectorText, rulesText);
      unwrap(answer);
      return answer.slice('{"ok":'.length, -1);
    },
  };
}
