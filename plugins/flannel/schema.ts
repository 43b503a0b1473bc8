const route = {
  type: "object",
  required: ["dst"],
  properties: {
    dst: { type: "string" },
    gw: { type: "string" },
    mtu: { type: "integer" },
    advmss: { type: "integer" },
    priority: { type: "integer" },
    table: { type: "integer" },
    scope: { type: "integer" },
  },
} as const;

/**
 * flannel's keys (flannel-io/cni-plugin NetConf). `delegate` and `ipam` are the bases of the
 * delegate's config and pass any other key through. A null delegate is no delegate, as the Go
 * plugin's map decodes it.
 */
export const flannelConfigSchema = {
  $id: "flannel",
  allOf: [{ $ref: "netconf" }],
  type: "object",
  properties: {
    subnetFile: { type: "string", minLength: 1, default: "/run/flannel/subnet.env" },
    dataDir: { type: "string", minLength: 1, default: "/var/lib/cni/flannel" },
    delegate: {
      type: ["object", "null"],
      properties: { type: { type: "string", minLength: 1 } },
    },
    ipam: {
      type: "object",
      properties: {
        type: { type: "string", minLength: 1 },
        routes: { type: ["array", "null"], items: route },
      },
    },
  },
} as const;
