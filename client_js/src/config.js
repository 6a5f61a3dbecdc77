// The script tag's attributes (docs/TRACKER.md "Attributes"; docs/ARCHITECTURE.md "Tracker test
// hooks"). A bad value is reported on the console, naming the attribute, and the default is used.
export function readConfig(attr, scriptSrc, loc) {
  const int = (name, def, min, max) => {
    const raw = attr(name);
    if (raw == null || raw === "") return def;
    const n = Number(raw);
    if (Number.isInteger(n) && n >= min && n <= max) return n;
    console.warn(`microadjust: data-${name}="${raw}" is not an integer in ${min}..${max}; using ${def}`);
    return def;
  };
  // PROTOCOL §1: same origin as the script by default.
  const base = new URL(scriptSrc || loc.href, loc.href);
  let endpoint = attr("endpoint");
  const ws = new URL(endpoint || "/v1/stream", base);
  if (ws.protocol === "http:" || ws.protocol === "https:") ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
  if (ws.protocol !== "ws:" && ws.protocol !== "wss:") {
    console.warn(`microadjust: data-endpoint="${endpoint}" is not a ws(s) URL; using the script's origin`);
    ws.href = new URL("/v1/stream", base).href.replace(/^http/, "ws");
  }
  const site = attr("site") || "";
  ws.search = "?site=" + encodeURIComponent(site) + "&v=1";
  // PROTOCOL §3.2: the beacon endpoint lives beside the stream.
  const beacon = new URL("/v1/events", ws.href.replace(/^ws/, "http")).href;
  return {
    site,
    url: ws.href,
    beacon,
    hoverIntent: int("hover-intent", 2000, 100, 60000),
    flushMs: int("flush-ms", 500, 0, 60000),
    consentRequired: attr("consent") === "required",
    respectGpc: attr("respect-gpc") !== "false",
  };
}
