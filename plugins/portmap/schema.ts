const PORT = { type: "integer", minimum: 1, maximum: 65535 } as const;
const CONDITIONS = { type: ["array", "null"], items: { type: "string" } } as const;

/**
 * The portmap plugin's keys (containernetworking/plugins plugins/meta/portmap PortMapConf), with
 * the reference's defaults. Checks that need more than one key (externalSetMarkChain with
 * markMasqBit, conditions of the other backend) and the condition tokens are in config.ts.
 */
export const portmapConfigSchema = {
  $id: "portmap",
  allOf: [{ $ref: "netconf" }],
  type: "object",
  properties: {
    snat: { type: "boolean", default: true },
    masqAll: { type: "boolean", default: false },
    markMasqBit: { type: "integer", minimum: 0, maximum: 31 },
    externalSetMarkChain: { type: "string", pattern: "^[A-Za-z0-9_.\\-]{1,28}$" },
    conditionsV4: CONDITIONS,
    conditionsV6: CONDITIONS,
    backend: { enum: ["iptables", "nftables"] },
    runtimeConfig: {
      type: "object",
      properties: {
        portMappings: {
          type: ["array", "null"],
          items: {
            type: "object",
            required: ["hostPort", "containerPort"],
            properties: {
              hostPort: PORT,
              containerPort: PORT,
              protocol: { enum: ["tcp", "udp", "sctp", "TCP", "UDP", "SCTP"], default: "tcp" },
              hostIP: { type: "string" },
            },
          },
        },
      },
    },
  },
} as const;
