// Form interaction (proposed kind `form`): focus, blur, change and submit, naming the field (its
// name, else id) and the form (name, else id), never a value. Password and card fields, hidden
// inputs and anything inside [data-ma-ignore] are skipped entirely (dom.field).
import { field } from "../dom.js";

export function forms(ctx) {
  const on = (type, ev) =>
    ctx.on(
      document,
      type,
      (e) => {
        const f = field(e.target);
        if (f) ctx.emit({ k: "form", ev, ...f });
      },
      true,
    );
  on("focusin", "focus");
  on("focusout", "blur");
  on("change", "change");
  ctx.on(
    document,
    "submit",
    (e) => {
      const form = e.target;
      if (!form || form.closest("[data-ma-ignore]")) return;
      const name = form.getAttribute("name") || form.id;
      ctx.emit(name ? { k: "form", ev: "submit", form: name.slice(0, 64) } : { k: "form", ev: "submit" }, true);
    },
    true,
  );
}
