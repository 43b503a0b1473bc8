import { describe, expect, it } from "vitest";
import { buildDelegateConfig, renderDelegateConfig, type FlannelConf } from "./delegate-config.js";
import type { SubnetEnv } from "./subnet-env.js";

const V4: SubnetEnv = { networks: ["10.244.0.0/16"], subnets: ["10.244.1.0/24"], ipv6Networks: [], ipv6Subnets: [], mtu: 1450, ipMasq: true };
const DUAL: SubnetEnv = { ...V4, ipv6Networks: ["fd00:10:244::/56"], ipv6Subnets: ["fd00:10:244:1::/64"] };
const V6: SubnetEnv = { ...DUAL, networks: [], subnets: [] };

function conf(extra: Partial<FlannelConf> = {}): FlannelConf {
  return { cniVersion: "0.3.1", name: "cbr0", type: "flannel", subnetFile: "/run/flannel/subnet.env", dataDir: "/var/lib/cni/flannel", ...extra };
}

const render = (c: FlannelConf, env: SubnetEnv) => renderDelegateConfig(buildDelegateConfig(c, env));

describe("buildDelegateConfig + renderDelegateConfig: the Go plugin's bytes", () => {
  it("matches the delegate the Go plugin rendered for kube-flannel.yml's delegate and a dual-stack subnet.env", () => {
    const c = conf({ cniVersion: "1.0.0", delegate: { hairpinMode: true, isDefaultGateway: true }, ipam: { dataDir: "/tmp/ipam" } });
    expect(render(c, DUAL)).toBe(
      '{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,' +
        '"ipam":{"dataDir":"/tmp/ipam","ranges":[[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00:10:244:1::/64"}]],' +
        '"routes":[{"dst":"10.244.0.0/16"},{"dst":"fd00:10:244::/56"}],"type":"host-local"},' +
        '"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}',
    );
  });

  it("fills in bridge, host-local, isGateway, mtu and the opposite of FLANNEL_IPMASQ when nothing is given", () => {
    expect(render(conf(), V4)).toBe(
      '{"cniVersion":"0.3.1","ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},' +
        '"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}',
    );
    expect(buildDelegateConfig(conf(), { ...V4, ipMasq: false }).ipMasq).toBe(true);
  });

  it("leaves cniVersion out when the network has none", () => {
    const { cniVersion: _, ...withoutVersion } = conf();
    expect(buildDelegateConfig(withoutVersion as FlannelConf, V4)).not.toHaveProperty("cniVersion");
    expect(buildDelegateConfig(conf({ cniVersion: "" }), V4)).not.toHaveProperty("cniVersion");
  });

  it("keeps what the delegate sets, even false, 0 or null", () => {
    const c = conf({ delegate: { ipMasq: true, mtu: 0, isGateway: false, bridge: "cni9", forceAddress: null } });
    expect(buildDelegateConfig(c, V4)).toMatchObject({ ipMasq: true, mtu: 0, isGateway: false, bridge: "cni9", forceAddress: null });
  });

  it("adds isGateway for bridge only", () => {
    const c = buildDelegateConfig(conf({ delegate: { type: "ipvlan", master: "eth0" } }), V4);
    expect(c).toMatchObject({ type: "ipvlan", master: "eth0", mtu: 1450, ipMasq: false });
    expect(c).not.toHaveProperty("isGateway");
  });

  it("copies runtimeConfig whole, over any the delegate has", () => {
    const runtimeConfig = { mac: "00:11:22:33:44:55", ips: ["10.244.1.9/24"] };
    const c = buildDelegateConfig(conf({ delegate: { runtimeConfig: { portMappings: [] } }, runtimeConfig }), V4);
    expect(c.runtimeConfig).toEqual(runtimeConfig);
    expect(buildDelegateConfig(conf(), V4)).not.toHaveProperty("runtimeConfig");
  });

  it("bases ipam on the user's: other keys pass, type kept, ranges always replaced, user routes first", () => {
    const c = conf({
      ipam: {
        type: "weft-ipam",
        dataDir: "/var/run/cni",
        resolvConf: "/etc/resolv.conf",
        ranges: [[{ subnet: "192.168.0.0/24" }]],
        routes: [{ dst: "192.168.5.0/24", gw: "10.244.1.254" }],
      },
    });
    expect(renderDelegateConfig(buildDelegateConfig(c, DUAL).ipam as never)).toBe(
      '{"dataDir":"/var/run/cni","ranges":[[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00:10:244:1::/64"}]],"resolvConf":"/etc/resolv.conf",' +
        '"routes":[{"dst":"192.168.5.0/24","gw":"10.244.1.254"},{"dst":"10.244.0.0/16"},{"dst":"fd00:10:244::/56"}],"type":"weft-ipam"}',
    );
  });

  it("re-encodes user routes as types.Route does: struct field order, Go's address forms, host bits kept, zero mtu/advmss/priority dropped, table and scope kept", () => {
    const c = conf({
      ipam: {
        routes: [
          { scope: 0, table: 0, priority: 0, advmss: 0, mtu: 0, gw: "fd00:0:0::1", dst: "fd00:0:0:5::1/64" },
          { dst: "10.9.0.1/16", mtu: 1400, advmss: 1360, priority: 5, extra: "dropped" } as never,
          { dst: "10.8.0.0/16", gw: "" },
        ],
      },
    });
    expect(renderDelegateConfig(buildDelegateConfig(c, V4))).toContain(
      '"routes":[{"dst":"fd00:0:0:5::1/64","gw":"fd00::1","table":0,"scope":0},{"dst":"10.9.0.1/16","mtu":1400,"advmss":1360,"priority":5},{"dst":"10.8.0.0/16"},{"dst":"10.244.0.0/16"}]',
    );
  });

  it("gives an IPv6-only node one range set and its routes", () => {
    expect(renderDelegateConfig(buildDelegateConfig(conf(), V6).ipam as never)).toBe(
      '{"ranges":[[{"subnet":"fd00:10:244:1::/64"}]],"routes":[{"dst":"fd00:10:244::/56"}],"type":"host-local"}',
    );
  });

  it("routes to every cluster network and makes one range per subnet of a family", () => {
    const env: SubnetEnv = { ...DUAL, networks: ["10.244.0.0/16", "10.245.0.0/16"], subnets: ["10.244.1.0/24", "10.245.1.0/24"] };
    const ipam = buildDelegateConfig(conf(), env).ipam;
    expect(ipam).toMatchObject({
      ranges: [[{ subnet: "10.244.1.0/24" }, { subnet: "10.245.1.0/24" }], [{ subnet: "fd00:10:244:1::/64" }]],
      routes: [{ dst: "10.244.0.0/16" }, { dst: "10.245.0.0/16" }, { dst: "fd00:10:244::/56" }],
    });
  });

  it("sorts the keys of nested delegate maps and escapes strings as Go's encoding/json does", () => {
    const c = conf({ delegate: { zeta: { b: [{ y: 1, x: 2 }], a: "<&>\u2028" }, alpha: 1.5 } });
    expect(render(c, V4)).toBe(
      '{"alpha":1.5,"cniVersion":"0.3.1","ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},' +
        '"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge","zeta":{"a":"\\u003c\\u0026\\u003e\\u2028","b":[{"x":2,"y":1}]}}',
    );
  });

  it("renders a null the delegate sets as JSON null", () => {
    expect(render(conf({ delegate: { forceAddress: null } }), V4)).toContain('"forceAddress":null,"ipMasq":false');
  });

  it("prints only ipam.routes in types.Route field order: other lists of objects in ipam keep all their keys, sorted", () => {
    const c = conf({ ipam: { type: "static", addresses: [{ gateway: "10.244.1.1", address: "10.244.1.5/24", version: "4" }] } });
    expect(render(c, V4)).toContain('"ipam":{"addresses":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","version":"4"}],"ranges":');
  });

  it("prints a routes list inside the delegate's own maps as a Go map: keys sorted, none dropped", () => {
    const c = conf({ delegate: { vrf: { routes: [{ via: "eth1", table: 7, dst: "10.0.0.0/8" }] } } });
    expect(render(c, V4)).toContain('"vrf":{"routes":[{"dst":"10.0.0.0/8","table":7,"via":"eth1"}]}');
  });

  it("does not change the config it is given", () => {
    const c = conf({ delegate: { hairpinMode: true }, ipam: { routes: [{ dst: "10.9.0.0/16" }] }, runtimeConfig: { mac: "x" } });
    const before = structuredClone(c);
    buildDelegateConfig(c, DUAL);
    expect(c).toEqual(before);
  });

  it.each([
    [{ delegate: { name: "x" } }, "invalid network config: delegate.name must not be set: flannel sets it to the network name"],
    [{ delegate: { ipam: {} } }, "invalid network config: delegate.ipam must not be set: flannel builds it (use the top-level ipam key)"],
    [{ ipam: { routes: [{ dst: "10.0.0.0" }] } }, 'invalid network config: ipam.routes[0].dst "10.0.0.0" is not a CIDR'],
    [{ ipam: { routes: [{ dst: "10.0.0.0/8", gw: "10.0.0" }] } }, 'invalid network config: ipam.routes[0].gw "10.0.0" is not an IP address'],
  ] as [Partial<FlannelConf>, string][])("refuses %j with code 7", (extra, message) => {
    expect(() => buildDelegateConfig(conf(extra), V4)).toThrow(expect.objectContaining({ code: 7, message }));
  });
});
