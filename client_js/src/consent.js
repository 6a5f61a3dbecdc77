// Consent (PROTOCOL §8). Three states: granted, pending (data-consent="required" and no decision
// yet), denied (revoked, or a Global Privacy Control / Do Not Track signal). Only `granted` records,
// stores or sends anything; the others open no socket at all. The visitor's decision persists in
// first-party localStorage so an opt-out survives reloads and later visits.
import { get, set, LOCAL } from "./store.js";

const KEY = "ma_consent";

export function createConsent(cfg, nav) {
  // GPC and DNT are honoured by default: they are the visitor saying "do not track me". A site
  // with another legal basis opts out explicitly with data-respect-gpc="false".
  const signal = cfg.respectGpc && !!nav && (nav.globalPrivacyControl === true || nav.doNotTrack === "1");
  let decision = get(LOCAL, KEY); // "granted" | "denied" | null
  return {
    status() {
      if (signal || decision === "denied") return "denied";
      return cfg.consentRequired && decision !== "granted" ? "pending" : "granted";
    },
    /** Records the visitor's grant; false when a GPC/DNT signal overrides it. */
    grant() {
      if (signal) {
        console.warn("microadjust: consent.grant() ignored: the browser sends Global Privacy Control or Do Not Track (see data-respect-gpc)");
        return false;
      }
      decision = "granted";
      set(LOCAL, KEY, decision);
      return true;
    },
    revoke() {
      decision = "denied";
      set(LOCAL, KEY, decision);
    },
  };
}
