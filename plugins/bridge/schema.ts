export const bridgeConfigSchema = {
  $id: "bridge",
  allOf: [{ $ref: "netconf" }],
} as const;
