// Typing cadence (proposed kind `keys`): per field, how many keys were pressed and the mean
// interval between them, sent when the field loses focus. Which keys were pressed is never read:
// only the time of each keydown. Skips the same fields as forms (dom.field).
import { field, now } from "../dom.js";

export function keys(ctx) {
  const typing = new Map(); // element -> {n, first, last}
  function done(el) {
    const r = typing.get(el);
    if (!r) return;
    typing.delete(el);
    const f = field(el);
    if (f) ctx.emit({ k: "keys", ...f, n: r.n, mean: r.n > 1 ? Math.round((r.last - r.first) / (r.n - 1)) : 0 });
  }
  ctx.on(
    document,
    "keydown",
    (e) => {
      if (e.repeat || !field(e.target)) return;
      const t = now();
      const r = typing.get(e.target);
      if (r) {
        r.n++;
        r.last = t;
      } else typing.set(e.target, { n: 1, first: t, last: t });
    },
    true,
  );
  ctx.on(document, "focusout", (e) => done(e.target), true);
  ctx.onHide(() => typing.forEach((_, el) => done(el)));
}
