// Consent (PROTOCOL §8). Three states: granted, pending (data-consent="required" and no decision
// yet), denied (revoked, or a Global Privacy Control / Do Not Track signal). Only `granted` records,
// stores or sends anything; the others open no socket at all. The visitor's decision persists in
// first-party localStorage so an opt-out survives reloads and later visits.
import { load, save, LOCAL } from "./store.js";

export const CONSENT_KEY = "ma_consent";

export function createConsent(cfg, nav) {
  // GPC and DNT are honoured by default: they are the visitor saying "do not track me". A site
  // with another legal basis opts out explicitly with data-respect-gpc="false".
  const signal = cfg.respectGpc && nav && (nav.globalPrivacyControl === true || nav.doNotTrack === "1");
  let decision = load(LOCAL, CONSENT_KEY); // "granted" | "denied" | null
  const decide = (d) => save(LOCAL, CONSENT_KEY, (decision = d));
  return {
    status: () => (signal || decision === "denied" ? "denied" : cfg.consentRequired && decision !== "granted" ? "pending" : "granted"),
    /** Records the visitor's grant; false when a GPC/DNT signal overrides it. */
    grant: () => (signal ? (console.warn("microadjust: grant() ignored: GPC/DNT"), false) : (decide("granted"), true)),
    revoke: () => decide("denied"),
  };
}
