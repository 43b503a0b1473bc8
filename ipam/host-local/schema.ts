// host-local's keys (plugins/ipam/host-local/backend/allocator/config.go). Addresses are checked in
// config.ts, where a message can name the range set. Go decodes null as "not set", so every
// optional key accepts null, and unknown keys pass, as the reference ignores them.

/**
 * Bounds far above real configs (dual-stack is two range sets, of a range or a few each), so that a
 * generated config cannot make every ADD reserve, sync and scan without end: each range set costs
 * a reservation file per ADD.
 */
export const MAX_RANGE_SETS = 64;
export const MAX_RANGES_PER_SET = 1024;
export const MAX_ROUTES = 1024;

const range = {
  type: "object",
  required: ["subnet"],
  properties: {
    subnet: { type: "string" },
    rangeStart: { type: ["string", "null"] },
    rangeEnd: { type: ["string", "null"] },
    gateway: { type: ["string", "null"] },
  },
} as const;

const rangeSets = {
  type: ["array", "null"],
  maxItems: MAX_RANGE_SETS,
  items: { type: "array", minItems: 1, maxItems: MAX_RANGES_PER_SET, items: range },
} as const;

// At most one requested address per range set is ever granted.
const ipList = { type: ["array", "null"], maxItems: MAX_RANGE_SETS, items: { type: "string" } } as const;

const route = {
  type: "object",
  required: ["dst"],
  properties: {
    dst: { type: "string" },
    gw: { type: ["string", "null"] },
    mtu: { type: "integer" },
    advmss: { type: "integer" },
    priority: { type: "integer" },
    table: { type: "integer" },
    scope: { type: "integer" },
  },
} as const;

export const hostLocalConfigSchema = {
  $id: "host-local",
  allOf: [{ $ref: "netconf" }],
  type: "object",
  required: ["ipam"],
  properties: {
    ipam: {
      type: "object",
      properties: {
        type: { type: "string" },
        ranges: rangeSets,
        // The single range of configs older than `ranges`; it becomes range set 0.
        subnet: { type: ["string", "null"] },
        rangeStart: { type: ["string", "null"] },
        rangeEnd: { type: ["string", "null"] },
        gateway: { type: ["string", "null"] },
        routes: { type: ["array", "null"], maxItems: MAX_ROUTES, items: route },
        dataDir: { type: ["string", "null"] },
        resolvConf: { type: ["string", "null"] },
        // weft only: how long to wait for another plugin holding the store's lock (code 11 after).
        lockTimeoutMs: { type: "integer", minimum: 1 },
      },
    },
    runtimeConfig: {
      type: "object",
      properties: { ips: ipList, ipRanges: rangeSets },
    },
    args: {
      type: "object",
      properties: {
        cni: { type: ["object", "null"], properties: { ips: ipList } },
      },
    },
  },
} as const;
