// Entry of the script-tag build (dist/microadjust.min.js, an IIFE): starts the tracker from its own
// <script data-site=...> tag and replays the calls the stub snippet queued before it loaded.
import { init, replay } from "./tracker.js";

const tag = document.currentScript || document.querySelector("script[data-site]");
if (tag && !(window.microadjust && window.microadjust.__ma)) {
  const stub = window.microadjust;
  replay(stub, (window.microadjust = init((n) => tag.getAttribute("data-" + n), tag.src)));
}
