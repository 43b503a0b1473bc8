const address = { type: "string" } as const;
const cidr = { type: "string" } as const;
/** 0 is flanneld's "not given": the length is then derived from the network's. */
const length = { type: "integer", minimum: 0 } as const;

/**
 * The network config flanneld reads from `<prefix>/config` (pkg/subnet/config.go), with the keys of
 * the backends weft runs (pkg/backend/{vxlan,hostgw,udp}). Types and ranges only: the defaults that
 * depend on the network and the checks across keys are in network-config.ts. Unknown keys pass, as
 * Go's decoder ignores them.
 */
export const agentNetworkConfigSchema = {
  $id: "agent-network-config",
  type: "object",
  properties: {
    Network: cidr,
    SubnetLen: length,
    SubnetMin: address,
    SubnetMax: address,
    EnableIPv4: { type: "boolean", default: true },
    EnableIPv6: { type: "boolean", default: false },
    IPv6Network: cidr,
    IPv6SubnetLen: length,
    IPv6SubnetMin: address,
    IPv6SubnetMax: address,
    EnableNFTables: { type: "boolean", default: false },
    Backend: {
      type: "object",
      required: ["Type"],
      properties: {
        Type: { enum: ["vxlan", "host-gw", "udp"] },
        VNI: { type: "integer", minimum: 0, maximum: 16777215 },
        Port: { type: "integer", minimum: 0, maximum: 65535 },
        GBP: { type: "boolean" },
        Learning: { type: "boolean" },
        DirectRouting: { type: "boolean" },
        MTU: { type: "integer", minimum: 68, maximum: 65535 },
      },
    },
  },
} as const;
