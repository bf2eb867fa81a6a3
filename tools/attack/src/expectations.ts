/**
 * The one table of what the suite expects: for every check, the defect class (issue 6 item), what the attacker sends,
 * the refusal a correct gateway gives and the accepted case checked beside it. Where issue 6 does not fix the exact
 * text, the checks assert the class of outcome (status range, close-code range, sender-only close, receivers
 * unaffected) using the values below; adjust them here, not in the checks, when a fix settles on a value.
 */

export const EXPECTED = {
  /** Upgrade refusal for a bad connect token (forged, expired, not yet valid, alg none, wrong iss/aud). */
  upgradeAuthStatus: [401],
  /** Per-IP / per-user cap at the upgrade. */
  capStatus: [429],
  /** REST body over the limit, before it is read. */
  restTooLarge: [413],
  /** REST deeply nested JSON: batch endpoint (parses the body) and single endpoint (body is the payload). */
  restTooDeep: [400],
  restTooDeepSingle: [400],
  /** REST accepted broadcast. */
  restAccepted: [202],
  /** A socket closed by the server for abuse: WedSync's range, or a protocol-level code from the ws layer. */
  senderCloseCodes: { min: 1000, max: 4999, not: [1011, 1006] },
  /** Too many joins per second. */
  joinFloodClose: [4029],
  /** Slow reader. */
  slowReaderClose: [4008],
  /** Never acceptable as a reaction to client input: the actor crashed. */
  crashCloseCodes: [1011],
  /** ws-level protocol violations (reserved opcode, bad fragmentation, invalid UTF-8, unmasked): RFC 6455 codes. */
  wsViolationCloseCodes: [1002, 1007, 1008, 1009],
  /** A join error reply text must name a reason (non-empty); exact texts are the fixes' choice. */
  joinErrorPattern: /\S/,
  /** Largest body the oversized REST attack sends (full mode sends `fullRestBytes`). */
  shortRestBytes: 8 * 1024 * 1024,
  fullRestBytes: 100 * 1024 * 1024,
  /** Bytes of the max-size accepted broadcast / presence track (just under MAX_PAYLOAD_BYTES' default 3,000,000). */
  maxPayloadProbeBytes: 2_900_000,
  /** Bindings in one join for the "too many bindings" attack (above any sane MAX_BINDINGS_PER_CHANNEL). */
  tooManyBindings: 500,
  /** Nesting depth of the deeply nested payloads. */
  nestingDepth: 100_000,
  /** Victims: p99 during an attack within this factor of the baseline p99 (reported; asserted in full mode only). */
  p99Factor: 1.1,
  /** RSS after the run (after GC) at most this factor of RSS before, plus the slack (KiB). */
  rssFactor: 2,
  rssSlackKiB: 128 * 1024
} as const

interface CheckSpec {
  readonly id: string
  /** Issue 6 item number(s), or the attack-suite section ("tokens", "floods", "fuzz", "slow readers"). */
  readonly item: string
  readonly title: string
  readonly attack: string
  readonly refusal: string
  readonly accepted: string
}

const spec = (
  id: string,
  item: string,
  title: string,
  attack: string,
  refusal: string,
  accepted: string
): CheckSpec => ({ id, item, title, attack, refusal, accepted })

export const CHECKS: ReadonlyArray<CheckSpec> = [
  spec(
    "proto-presence-keys",
    "1",
    "prototype-named presence keys",
    "presence keys `constructor`, `__proto__`, `toString`, `hasOwnProperty` tracked in a room",
    "none needed: tracked like any key; later joiners are not closed 1011",
    "a later joiner with a normal key joins, tracks and sees every key in presence_state"
  ),
  spec(
    "proto-events-topics",
    "1",
    "prototype-named topics and events",
    "joins `realtime:__proto__`, `realtime:constructor`; broadcasts with events `__proto__`, `constructor`, `valueOf`",
    "none needed: delivered like any name; no 1011",
    "a receiver gets every broadcast; a normal topic still works"
  ),
  spec(
    "max-broadcast",
    "2",
    "max-size broadcast vs receivers",
    "one broadcast just under MAX_PAYLOAD_BYTES (2.9 MB) into a room with two reading receivers",
    "either refused to the sender (error reply) or delivered; receivers are never closed (no 4008)",
    "a 100 KB broadcast reaches both receivers"
  ),
  spec(
    "max-presence",
    "2",
    "max-size presence track vs receivers and joiners",
    "one 2.9 MB presence track, then three 600 KB tracks (state > 1 MiB), then a new joiner",
    "large tracks refused to the tracker (error reply / shutdown of its channel) or accepted; receivers and the later joiner are never closed",
    "a small track is delivered; the later joiner's join succeeds"
  ),
  spec(
    "expired-connect-token",
    "3",
    "expired connect token",
    "connect with a user token (2 s lifetime) and join a private wedding channel after it expired, without access_token",
    "join error reply or socket closed",
    "the same join before expiry succeeds"
  ),
  spec(
    "row-move",
    "4",
    "row moving between weddings",
    "UPDATE wedding_id B→A on a REPLICA IDENTITY FULL table watched by an A and a B subscriber",
    "A's old_record carries no B content; B receives no A content",
    "A receives the UPDATE's new record; B receives its own marker row"
  ),
  spec(
    "rest-oversized",
    "5",
    "oversized and chunked REST bodies",
    "POST bodies of 8 MB (full: 100 MB) with Content-Length and chunked, to both REST endpoints",
    "413 before the body is read",
    "a small broadcast is answered 202"
  ),
  spec(
    "per-user-cap",
    "6",
    "per-user cap via supabase-js joins",
    "MAX_CONNECTIONS_PER_USER+1 supabase-js clients (anon key) joining with the same user's token",
    "the extra client's join is refused or its socket closed",
    "the first MAX_CONNECTIONS_PER_USER clients subscribe"
  ),
  spec(
    "refresh-anon",
    "7",
    "token refresh with the anon key",
    "access_token push carrying the project anon key on a joined private channel",
    "the private channel is shut down (system error / phx_close)",
    "an access_token push with a fresh user token keeps its channel"
  ),
  spec(
    "jwt-nbf",
    "8",
    "not-yet-valid token (nbf)",
    "connect and join tokens with nbf = now + 1 h",
    "401 at the upgrade; join error reply",
    "the same token without nbf connects and joins"
  ),
  spec(
    "jwt-iss-aud",
    "8",
    "issuer and audience",
    "tokens with a wrong or missing iss / aud to a gateway with JWT_ISSUER and JWT_AUDIENCE",
    "401 at the upgrade",
    "a token with the configured iss and aud connects"
  ),
  spec(
    "jwt-short-secret",
    "8",
    "short JWT_SECRET",
    "start a gateway with a 9-byte JWT_SECRET",
    "the process refuses to start (exits, never listens)",
    "the suite's 52-byte secret starts"
  ),
  spec(
    "jwt-alg-none",
    "tokens",
    "alg none token",
    "service_role claims with `alg: none` and no signature",
    "401 at the upgrade; join error reply",
    "a signed token connects"
  ),
  spec(
    "jwt-forged",
    "tokens",
    "forged token",
    "service_role token signed with a guessed secret",
    "401 at the upgrade; join error reply",
    "a signed token connects"
  ),
  spec(
    "jwt-expired",
    "tokens",
    "expired token",
    "token expired 60 s ago, at connect and in a join",
    "401 at the upgrade; join error reply",
    "a fresh token connects and joins"
  ),
  spec(
    "cross-wedding-join",
    "tokens",
    "cross-wedding join",
    "user of wedding A joins private `wedding:B`",
    "join error reply (Unauthorized)",
    "the same user joins `wedding:A`"
  ),
  spec(
    "pgc-unknown-event",
    "9",
    "unknown postgres_changes event",
    "binding with event `UPSERT`",
    "join error reply or postgres_changes system error (not widened to *)",
    "event INSERT: `Subscribed to PostgreSQL`"
  ),
  spec(
    "pgc-too-many-bindings",
    "9",
    "too many bindings",
    "one join with 500 postgres_changes bindings",
    "join error reply or system error",
    "a join with 2 bindings subscribes"
  ),
  spec(
    "heartbeat-flood",
    "9",
    "heartbeat flood",
    "2,000 heartbeats as fast as the socket takes them",
    "per-socket rate limit: socket closed (or error replies) before all are answered",
    "one heartbeat a second is answered ok"
  ),
  spec(
    "deep-nesting-rest",
    "10",
    "deeply nested REST payload",
    "broadcast payload nested 100,000 levels, both endpoints",
    "400, at most one log line per request",
    "a flat payload is answered 202"
  ),
  spec(
    "deep-nesting-ws",
    "10",
    "deeply nested WS payload",
    "broadcast payload nested 100,000 levels from a joined socket",
    "only the sender is closed (not 1011); no stack trace per frame in the log",
    "a receiver in the room stays and gets the next broadcast"
  ),
  spec(
    "xff-spoof",
    "17",
    "X-Forwarded-For spoofing",
    "upgrades with forged X-Forwarded-For past the per-IP cap; trusted proxy with two client addresses",
    "429 for the spoofer (untrusted peer); 429 for one forwarded address over its cap",
    "another forwarded address behind the trusted proxy connects"
  ),
  spec(
    "flood-connections",
    "floods",
    "connection flood from one address",
    "MAX_CONNECTIONS_PER_IP + 20 upgrades from 127.0.0.1",
    "429 past the cap",
    "connections below the cap open"
  ),
  spec(
    "flood-joins",
    "floods",
    "join flood",
    "150 joins in one burst on one socket",
    "close 4029 after MAX_JOINS_PER_SECOND",
    "10 joins on another socket succeed"
  ),
  spec(
    "flood-broadcasts",
    "floods",
    "broadcast flood",
    "400 broadcasts in one burst into the victims' room",
    "the flooder's channel is shut down (Too many messages per second)",
    "a probe receives the first broadcasts"
  ),
  spec(
    "flood-presence",
    "floods",
    "presence flood",
    "20 track calls in one burst",
    "the channel is shut down (Client presence rate limit exceeded)",
    "the first track is answered ok"
  ),
  spec(
    "slow-reader",
    "slow readers",
    "slow reader",
    "a member of a room stops reading while 30 MB are broadcast (about 100 × 100 KB/s)",
    "close 4008 for the slow reader only",
    "a reading member receives every broadcast"
  ),
  spec(
    "fuzz",
    "fuzz",
    "fuzzed frames",
    "frames across vsn 1.0.0, 2.0.0 and binary: malformed JSON, wrong arity, huge/negative numbers, prototype keys, deep nesting, invalid UTF-8, wrong opcodes, fragmented frames",
    "error replies or sender-only closes; never 1011; process up",
    "a fresh client joins and receives a broadcast afterwards"
  )
]

export const specOf = (id: string): CheckSpec => {
  const found = CHECKS.find((c) => c.id === id)
  if (found === undefined) throw new Error(`no expectation row for check ${id}`)
  return found
}
