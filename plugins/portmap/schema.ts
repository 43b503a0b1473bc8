const PORT = { type: "integer", minimum: 1, maximum: 65535 } as const;
const CONDITIONS = { type: ["array", "null"], items: { type: "string" } } as const;
/**
 * Mappings a pod may ask for (checked by ADD only: DEL removes whatever a pod has). Each costs a DNAT and two masquerade rules that every packet to a
 * host port may walk, and a tenant controls the list: at this bound an ADD stays within about a
 * quarter of a second and 60 MB; ten thousand took seconds and blocked every other netfilter user.
 */
export const MAX_PORT_MAPPINGS = 1024;

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
