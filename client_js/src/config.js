// The script tag's attributes (docs/TRACKER.md "Attributes"; docs/ARCHITECTURE.md "Tracker test
// hooks"). `attr(name)` reads one without its `data-` prefix. A bad value is reported on the
// console, naming the attribute, and the default is used.
export function readConfig(attr, scriptSrc, loc) {
  const int = (name, def, min, max) => {
    const raw = attr(name);
    const n = raw == null || raw === "" ? def : +raw;
    if (Number.isInteger(n) && n >= min && n <= max) return n;
    console.warn(`microadjust: data-${name} not in ${min}..${max}`);
    return def;
  };
  const site = attr("site") || "";
  // PROTOCOL §1: same origin as the script by default; an http(s) endpoint becomes ws(s).
  const base = new URL(scriptSrc || loc.href, loc.href);
  let ws = new URL(attr("endpoint") || "/v1/stream", base);
  if (!/^(http|ws)s?:$/.test(ws.protocol)) {
    console.warn("microadjust: bad data-endpoint");
    ws = new URL("/v1/stream", base);
  }
  ws.protocol = ws.protocol.replace("http", "ws");
  ws.search = "?site=" + encodeURIComponent(site) + "&v=1";
  return {
    site,
    url: ws.href,
    // PROTOCOL §3.2: the beacon endpoint lives beside the stream.
    beacon: new URL("/v1/events", ws.href.replace("ws", "http")).href,
    hoverIntent: int("hover-intent", 2000, 100, 60000),
    flushMs: int("flush-ms", 500, 0, 60000),
    consentRequired: attr("consent") === "required",
    respectGpc: attr("respect-gpc") !== "false",
  };
}
