"""Settings of a microadjust server: where it listens, which sites it serves, and every limit.

Each limit is a named field with a reasoned default; docs/SERVER.md ("Limits") gives the same
reasoning and what each costs in memory per connection. The CLI and tests build a `Settings`
and hand it to `create_app`; nothing else reads the environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_SITE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ORIGIN = re.compile(r"https?://[^/\s?#]+")


class SettingsError(ValueError):
    """A setting that cannot work; the message names it."""


@dataclass
class Limits:
    # PROTOCOL §2.3 limits.frame. A batch of 100 events is ~10 KB; 64 KiB leaves room for a
    # `view` listing 200 items while bounding what one frame can make the server parse.
    max_frame: int = 64 * 1024
    # PROTOCOL §2.3 limits.batch: the tracker flushes every 500 ms, so 100 events is a storm.
    max_batch: int = 100
    # PROTOCOL §2.2: an open socket that never says hello holds a slot; 10 s covers slow phones.
    hello_timeout_s: float = 10.0
    # PROTOCOL §6: heartbeat interval announced in welcome; silence for 3 x hb closes (4008).
    # 25 s stays under the 30-60 s idle timeouts of common proxies and load balancers.
    heartbeat_ms: int = 25_000
    # Messages per second per connection (token bucket) and the burst it tolerates. A tracker
    # sends ~2 batches/s plus pings and applied reports; 20/s is ten times that.
    rate_per_s: float = 20.0
    rate_burst: int = 40
    # Rate-limited messages tolerated within `flood_window_s` before closing with 4004 (§7).
    flood_strikes: int = 20
    flood_window_s: float = 10.0
    # PROTOCOL §7: bad messages in one connection before 4003.
    bad_message_budget: int = 10
    # Outbound messages queued per connection before it is treated as a dead consumer and
    # closed. Each queued message is ~0.2-1 KB, so 256 bounds a stuck client at ~256 KB.
    write_queue: int = 256
    # Compare-and-set retries for one batch before giving up (answering 1011 on the socket or
    # 503 on the beacon); conflicts need two writers on one session, so 2-3 is already rare.
    commit_retries: int = 8
    # Re-evaluation of an idle connection's time-based rules (`for` timers, clock features)
    # without new events; 0 disables. One store load + commit per idle connection per tick.
    tick_ms: int = 2_000
    # PROTOCOL §2.3 resume: the last `outbox_size` patch/revert messages of a session are kept
    # `outbox_ttl_s` after its last one, so a tab that reconnects gets what it missed. 64 covers
    # minutes of a busy session (a few patches a minute); the same bound in both modes. The
    # embedded mode also caps the sessions it keeps (LRU): <= 10,000 x 64 x ~0.5 KB.
    outbox_size: int = 64
    outbox_ttl_s: int = 3600
    outbox_sessions: int = 10_000
    # Embedded store (docs/SERVER.md, "Embedded store"): visitors kept in memory, the least
    # recently active dropped first beyond the cap, and sessions kept per visitor. A visitor with
    # one session holds ~2.2-3.4 KB (bench/experiments/store_memory.py), so 100,000 bound the
    # store at ~340 MB. Redis mode keeps profiles in Redis and ignores both.
    store_visitors: int = 100_000
    store_sessions_per_visitor: int = 100
    # SIGTERM drain (docs/SCALING.md): close every socket with 4010, flush buffered writes and
    # exit within this many seconds; what is not done by then is abandoned (Redis mode: events
    # still buffered after an outage are lost only if Redis is unreachable for the whole drain).
    drain_timeout_s: float = 10.0


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    # site key -> allowed page origins (scheme://host[:port]) for the socket and the beacon
    sites: dict[str, list[str]] = field(default_factory=dict)
    admin_token: str | None = None  # bearer token of /v1/admin/*; None disables the admin API
    rules_file: Path | None = None  # rules JSON; watched and written back by the admin API
    rules_poll_s: float = 1.0  # how often the rules file's mtime is checked (hot reload)
    data_dir: Path = Path("data")
    event_log: Path | None = None  # JSON lines; default data_dir/events.jsonl
    event_log_max_bytes: int = 64 * 1024 * 1024  # rotate at 64 MiB ...
    event_log_backups: int = 5  # ... keeping 5 old files: at most ~384 MiB on disk
    static_dir: Path = Path(__file__).parent / "static"
    demo: bool = False  # serve the demo pages at /, /shop, /article
    # GET /v1/rules/snapshot?site=KEY (`serve --public-rules`): the live rule set, readable by the
    # site's pages (Origin in its allow-list) for the tracker's offline mode (docs/PYWASM.md). Off
    # by default: it exposes the whole rule set (conditions, thresholds, texts) to any visitor.
    public_rules: bool = False
    # Production mode (docs/SCALING.md): redis://, rediss://, redis+cluster:// or None for the
    # embedded in-process store. Every process given the same URL is a full peer.
    redis_url: str | None = None
    redis_cluster: bool = False  # treat a plain redis:// URL as a cluster seed (--redis-cluster)
    retention_s: int = 30 * 24 * 3600  # profiles expire after this much inactivity (both stores)
    workers: int = 1  # `serve --workers N`: N processes sharing the port (N > 1 needs Redis)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        for key, origins in self.sites.items():
            if not _SITE_KEY.fullmatch(key):
                raise SettingsError(f"site key {key!r}: expected [A-Za-z0-9_-]{{1,64}}")
            for origin in origins:
                if not _ORIGIN.fullmatch(origin):
                    raise SettingsError(
                        f"site {key!r}: origin {origin!r} is not scheme://host[:port] (no path, no trailing slash)"
                    )
        if self.admin_token is not None and len(self.admin_token) < 8:
            raise SettingsError("admin token: use at least 8 characters")
        if self.limits.max_frame < 1024:
            raise SettingsError("limits.max_frame: at least 1024 bytes")
        for name in ("outbox_size", "outbox_ttl_s", "outbox_sessions"):
            if getattr(self.limits, name) < 1:
                raise SettingsError(f"limits.{name}: at least 1")
        if not 0 < self.limits.drain_timeout_s <= 3600:
            raise SettingsError(f"drain timeout {self.limits.drain_timeout_s!r}: expected seconds in (0, 3600]")
        if self.retention_s <= 0:
            raise SettingsError(f"retention {self.retention_s!r}: expected a positive number of seconds")
        if self.workers < 1:
            raise SettingsError(f"workers {self.workers}: at least 1")
        if self.workers > 1 and not self.redis_url:
            raise SettingsError(
                f"--workers {self.workers} needs --redis URL (or MICROADJUST_REDIS_URL): the embedded store "
                "lives in one process's memory, so workers would not share profiles, acks or patches"
            )

    @property
    def event_log_path(self) -> Path:
        return self.event_log or (Path(self.data_dir) / "events.jsonl")

    def origin_allowed(self, site: str, origin: str | None) -> bool:
        """PROTOCOL §2.1: the page's Origin must be in the site's allow-list."""
        allowed = self.sites.get(site)
        return bool(origin) and allowed is not None and origin in allowed


def parse_sites(spec: str) -> dict[str, list[str]]:
    """`KEY=ORIGIN,ORIGIN;KEY2=ORIGIN` (the CLI's --site, repeatable) -> {key: [origins]}."""
    sites: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        key, sep, origins = part.partition("=")
        if not sep or not key.strip() or not origins.strip():
            raise SettingsError(f"site spec {part!r}: expected KEY=ORIGIN[,ORIGIN...]")
        sites.setdefault(key.strip(), []).extend(o.strip().rstrip("/") for o in origins.split(",") if o.strip())
    return sites


def admin_token_from_env() -> str | None:
    return os.environ.get("MICROADJUST_ADMIN_TOKEN") or None
