/** The keys every plugin config may carry (SPEC.md "Network configuration"); plugins extend it. */
export const netConfSchema = {
  $id: "netconf",
  type: "object",
  required: ["name"],
  properties: {
    cniVersion: { type: "string" },
    name: { type: "string" },
    type: { type: "string" },
    capabilities: { type: "object", additionalProperties: { type: "boolean" } },
    ipam: { type: "object", properties: { type: { type: "string" } } },
    dns: {
      type: "object",
      properties: {
        nameservers: { type: "array", items: { type: "string" } },
        domain: { type: "string" },
        search: { type: "array", items: { type: "string" } },
        options: { type: "array", items: { type: "string" } },
      },
    },
    runtimeConfig: { type: "object" },
    args: { type: "object" },
    prevResult: { type: "object" },
  },
} as const;
