import { describe, expect, it } from "vitest";
import { bridgeSettings, collectVlanTrunk, type BridgeConf } from "./config.js";
import { calcGateways, effectiveGateway, firstAddress } from "./gateway.js";

describe("calcGateways", () => {
  const ipam = {
    ips: [{ address: "10.244.1.2/24" }, { address: "fd00:10:244:1::2/64", gateway: "fd00:10:244:1::fe" }],
    routes: [{ dst: "10.244.0.0/16" }],
  };

  it("points every IP at the container interface and computes missing gateways when isGateway", () => {
    const { result, gateways } = calcGateways(ipam, true, false);
    expect(result.ips).toEqual([
      { address: "10.244.1.2/24", gateway: "10.244.1.1", interface: 2 },
      { address: "fd00:10:244:1::2/64", gateway: "fd00:10:244:1::fe", interface: 2 },
    ]);
    expect(gateways).toEqual({ 4: ["10.244.1.1/24"], 6: ["fd00:10:244:1::fe/64"] });
    expect(result.routes).toEqual([{ dst: "10.244.0.0/16" }]);
  });

  it("adds one default route per family with isDefaultGateway, unless IPAM gave one with a gateway", () => {
    expect(calcGateways(ipam, true, true).result.routes).toEqual([
      { dst: "10.244.0.0/16" },
      { dst: "0.0.0.0/0", gw: "10.244.1.1" },
      { dst: "::/0", gw: "fd00:10:244:1::fe" },
    ]);
    const withDefault = { ...ipam, routes: [{ dst: "0.0.0.0/0", gw: "10.244.1.254" }] };
    expect(calcGateways(withDefault, true, true).result.routes).toEqual([
      { dst: "0.0.0.0/0", gw: "10.244.1.254" },
      { dst: "::/0", gw: "fd00:10:244:1::fe" },
    ]);
  });

  it("leaves gateways alone without isGateway and does not touch its input", () => {
    const before = JSON.stringify(ipam);
    const { result, gateways } = calcGateways(ipam, false, false);
    expect(result.ips?.[0]).toEqual({ address: "10.244.1.2/24", interface: 2 });
    expect(gateways).toEqual({ 4: [], 6: [] });
    expect(JSON.stringify(ipam)).toBe(before);
  });

  it("routes without gw go via their family's gateway", () => {
    const ips = [
      { address: "10.1.0.2/24", gateway: "10.1.0.1" },
      { address: "fd01::2/64", gateway: "fd01::1" },
    ];
    expect(effectiveGateway({ dst: "10.0.0.0/8" }, ips)).toBe("10.1.0.1");
    expect(effectiveGateway({ dst: "fd00::/8" }, ips)).toBe("fd01::1");
    expect(effectiveGateway({ dst: "10.0.0.0/8", gw: "10.1.0.9" }, ips)).toBe("10.1.0.9");
    expect(firstAddress("fd00:10:244:1::77/64")).toBe("fd00:10:244:1::1");
  });
});

describe("bridge settings", () => {
  const base = { name: "n", bridge: "cni0", vlan: 0, hairpinMode: false, promiscMode: false, disableContainerInterface: false } as BridgeConf;

  it("collects trunks with the reference's messages", () => {
    expect(collectVlanTrunk([{ id: 5 }, { minID: 3, maxID: 6 }])).toEqual([3, 4, 5, 6]);
    expect(() => collectVlanTrunk([{ minID: 3 }])).toThrow("maxID is missing");
    expect(() => collectVlanTrunk([{ minID: 7, maxID: 6 }])).toThrow("minID is greater than maxID");
    expect(() => collectVlanTrunk([{ id: 4095 }])).toThrow("incorrect trunk id parameter");
  });

  it("takes the MAC from runtimeConfig, then args, then CNI_ARGS; checks exclusive options", () => {
    const args = new Map([["MAC", "0A-58-00-00-00-01"]]);
    expect(bridgeSettings(base, args).mac).toBe("0a:58:00:00:00:01");
    expect(bridgeSettings({ ...base, args: { cni: { mac: "0a:58:00:00:00:02" } } }, args).mac).toBe("0a:58:00:00:00:02");
    expect(bridgeSettings({ ...base, runtimeConfig: { mac: "0a:58:00:00:00:03" }, args: { cni: { mac: "0a:58:00:00:00:02" } } }, args).mac).toBe(
      "0a:58:00:00:00:03",
    );
    expect(() => bridgeSettings(base, new Map([["MAC", "nope"]]))).toThrow("invalid MAC address");
    expect(() => bridgeSettings({ ...base, vlan: 4095 }, new Map())).toThrow("invalid VLAN ID 4095");
    expect(() => bridgeSettings({ ...base, hairpinMode: true, promiscMode: true }, new Map())).toThrow("hairpin");
    expect(() => bridgeSettings({ ...base, disableContainerInterface: true, ipam: { type: "host-local" } }, new Map())).toThrow(
      "cannot use IPAM when DisableContainerInterface flag is set",
    );
    expect(() => bridgeSettings({ ...base, bridge: "a-very-long-bridge0" }, new Map())).toThrow("invalid bridge name");
    expect(bridgeSettings({ ...base, isDefaultGateway: true, isGateway: false }, new Map()).isGateway).toBe(true);
  });
});
