// Entry of the lazily loaded patcher chunk (dist/microadjust-patcher.js, an ES module). The
// default bundle carries only lazy.js, which import()s this file on the first patch of a page.
// The template/notify code (extra.js) is bundled in rather than loaded by a second request: it
// adds about 1.1 KB gzipped to the chunk, but a page never waits for two round trips in a row
// (docs/PATCHES.md "Size").
import { createPatcher } from "./index.js";
import * as extra from "./extra.js";

/** createPatcher() with the template/notify code already at hand. */
export const create = (options) => createPatcher({ ...options, loadExtra: () => extra });
