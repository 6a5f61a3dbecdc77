// Typed API of the microadjust tracker (docs/TRACKER.md "API"); hand-written, shipped as
// dist/microadjust.d.ts. Wire shapes follow protocol/PROTOCOL.md §5.

/** PROTOCOL §5 target: exactly one of slot, item, sel. */
export type PatchTarget = { slot: string } | { item: string } | { sel: string };

/** PROTOCOL §5.1, the closed operation vocabulary. */
export type PatchOp =
  | { op: "addClass" | "removeClass"; class: string }
  | { op: "setText"; text: string }
  | { op: "setStyle"; prop: string; value: string }
  | { op: "setAttr"; name: string; value: string }
  | { op: "reorder"; keys: string[] }
  | { op: "show" | "hide" }
  | { op: "template"; id: string; slots?: Record<string, string>; where?: "append" | "prepend" | "replace" }
  | { op: "notify"; kind: "toast" | "slidein" | "badge"; text: string; title?: string };

export interface Patch {
  id: string;
  rule?: string;
  target: PatchTarget;
  ops: PatchOp[];
  /** ms until the client reverts the patch; 0 = until the page unloads */
  ttl: number;
  priority?: number;
  /** event sequence number that caused it */
  cause?: number;
  exp?: { id: string; variant: string };
}

/** The `patch` message (PROTOCOL §5) as a subscribe() callback receives it. */
export interface PatchMessage {
  t: "patch";
  pseq: number;
  patch: Patch;
}

/** PROTOCOL §5.2 report, also the detail of the `microadjust:patch` DOM event. */
export interface PatchReport {
  id: string;
  pseq: number;
  status: "applied" | "delegated" | "reverted" | "refused" | "failed";
  reason?: string;
  /** event-to-paint time in ms */
  ms: number;
}

export type ConnectionState = "connecting" | "open" | "closed";
export type ConsentStatus = "granted" | "pending" | "denied";

export interface TrackerState {
  /** connection state, as in the `microadjust:state` event */
  state: ConnectionState;
  consent: ConsentStatus;
  /** highest event sequence number assigned in this session */
  seq: number;
  /** events not yet acknowledged by the server */
  pending: number;
  /** highest sequence number the server acknowledged */
  acked: number;
  /** events lost because the bounded resend buffer overflowed */
  dropped: number;
  vid: string | null;
  sid: string | null;
  /** the last viewed data-ma-item elements, most recent first */
  items: { item: string; ts: number }[];
}

/** Flat custom-event properties (PROTOCOL §3.1 `custom`: at most 32 keys, scalar values). */
export type TrackProps = Record<string, string | number | boolean | null>;

export interface Microadjust {
  /**
   * Receive the patches for `slot` instead of the default DOM application (status `delegated`).
   * Returns the function that unsubscribes.
   */
  subscribe(slot: string, callback: (patch: Patch) => void): () => void;
  /** A custom or goal event (`add_to_cart`, `purchase`); false when invalid or not consented. */
  track(name: string, props?: TrackProps): boolean;
  /** Sends the pending events now. */
  flush(): void;
  consent: {
    /** Starts tracking after the visitor agreed (data-consent="required"); persisted. */
    grant(): void;
    /** Stops tracking, clears the tracker's local state and persists the opt-out. */
    revoke(): void;
    status(): ConsentStatus;
  };
  state(): TrackerState;
}

/** Options of the ES module build's init(): the script tag attributes, camel-cased. */
export interface InitOptions {
  site: string;
  endpoint?: string;
  hoverIntent?: number;
  flushMs?: number;
  consent?: "required";
  respectGpc?: boolean;
}

/** ES module build: start the tracker without a script tag. */
export function init(options: InitOptions, scriptSrc?: string): Microadjust;

declare global {
  interface Window {
    microadjust: Microadjust;
  }
  interface DocumentEventMap {
    "microadjust:patch": CustomEvent<PatchReport>;
    "microadjust:state": CustomEvent<{ state: ConnectionState }>;
  }
}
