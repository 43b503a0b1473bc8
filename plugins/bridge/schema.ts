const MAC = "^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$";
const VLAN_ID = { type: "integer" } as const;

/**
 * The bridge plugin's keys (containernetworking/plugins bridge NetConf), with the reference's
 * defaults. Keys it does not know are ignored, as the reference ignores them. Range checks that
 * the reference reports with its own messages (vlan, vlanTrunk) are done in config.ts.
 */
export const bridgeConfigSchema = {
  $id: "bridge",
  allOf: [{ $ref: "netconf" }],
  type: "object",
  properties: {
    // Its length is checked in config.ts: ajv's string-length code needs a runtime require.
    bridge: { type: "string", default: "cni0" },
    isGateway: { type: "boolean", default: false },
    isDefaultGateway: { type: "boolean", default: false },
    forceAddress: { type: "boolean", default: false },
    ipMasq: { type: "boolean", default: false },
    ipMasqBackend: { enum: ["iptables", "nftables"] },
    mtu: { type: "integer", minimum: 0, maximum: 65535, default: 0 },
    hairpinMode: { type: "boolean", default: false },
    promiscMode: { type: "boolean", default: false },
    vlan: { ...VLAN_ID, default: 0 },
    preserveDefaultVlan: { type: "boolean", default: false },
    vlanTrunk: {
      type: ["array", "null"],
      items: {
        type: "object",
        properties: { id: VLAN_ID, minID: VLAN_ID, maxID: VLAN_ID },
      },
    },
    enabledad: { type: "boolean", default: false },
    macspoofchk: { type: "boolean", default: false },
    disableContainerInterface: { type: "boolean", default: false },
    portIsolation: { type: "boolean", default: false },
    runtimeConfig: {
      type: "object",
      properties: { mac: { type: "string", pattern: MAC } },
    },
    args: {
      type: "object",
      properties: {
        cni: { type: "object", properties: { mac: { type: "string", pattern: MAC } } },
      },
    },
  },
} as const;
