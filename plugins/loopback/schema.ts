export const loopbackConfigSchema = {
  $id: "loopback",
  allOf: [{ $ref: "netconf" }],
} as const;
