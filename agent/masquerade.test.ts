import { afterEach, describe, expect, it } from "vitest";
import { iptablesLine, parseNatTable } from "../lib/netfilter/netfilter.js";
import { netnsPool } from "../test/helpers/netns.js";
import { forwardRules, masqueradeRules, missingRules, restoreLines } from "./masquerade.js";

const pool = netnsPool();
afterEach(() => pool.cleanup());

const EMPTY = { chains: new Set<string>(), rules: new Map<string, string[][]>() };

describe("flanneld's rules", () => {
  it("masquerade, IPv4, in flanneld's order and words", () => {
    const rules = masqueradeRules("10.244.0.0/16", "10.244.1.0/24", { family: 4, randomFully: true });
    expect(rules.map((r) => `-t ${r.table} -A ${r.chain} ${iptablesLine(r.rule)}`)).toEqual([
      '-t nat -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      '-t nat -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
      '-t nat -A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
      '-t nat -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
      '-t nat -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
      '-t nat -A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      '-t nat -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
    ]);
  });

  it("masquerade, IPv6 and without --random-fully: multicast is ff00::/8, addresses canonical", () => {
    const rules = masqueradeRules("fd00:10:244:0::/56", "fd00:10:244:1::/64", { family: 6, randomFully: false });
    expect(rules[5]!.rule).toEqual([
      "-s",
      "fd00:10:244::/56",
      "!",
      "-d",
      "ff00::/8",
      "-m",
      "comment",
      "--comment",
      "flanneld masq",
      "-j",
      "MASQUERADE",
    ]);
    expect(rules[6]!.rule.slice(-2)).toEqual(["-j", "MASQUERADE"]);
  });

  it("forward: the jump, then accept from and to the network", () => {
    expect(forwardRules("10.244.0.0/16").map((r) => `-t ${r.table} -A ${r.chain} ${iptablesLine(r.rule)}`)).toEqual([
      '-t filter -A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      '-t filter -A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      '-t filter -A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
    ]);
  });

  it("refuses a network or subnet that is not a CIDR", () => {
    expect(() => masqueradeRules("10.244.0.0", "10.244.1.0/24", { family: 4, randomFully: true })).toThrow('network "10.244.0.0" is not a CIDR');
    expect(() => forwardRules("x")).toThrow('network "x" is not a CIDR');
  });
});

describe("restoreLines", () => {
  const rules = masqueradeRules("10.244.0.0/16", "10.244.1.0/24", { family: 4, randomFully: true });

  it("declares the agent's chain and appends the jump only when it is missing", () => {
    const fresh = restoreLines(rules, EMPTY);
    expect(fresh[0]).toEqual([":FLANNEL-POSTRTG", "-", "[0:0]"]);
    expect(fresh.filter((l) => l[1] === "POSTROUTING")).toHaveLength(1);
    const withJump = { chains: new Set(["POSTROUTING"]), rules: new Map([["POSTROUTING", [rules[0]!.rule]]]) };
    expect(restoreLines(rules, withJump).filter((l) => l[1] === "POSTROUTING")).toEqual([]);
    expect(restoreLines(rules, withJump)).toHaveLength(rules.length);
  });

  it("makes iptables-save show exactly flanneld's rules, again idempotently, and missingRules sees them all", () => {
    const ns = pool.create();
    const apply = (lines: string[][]) =>
      ns.exec("iptables-restore", ["-w", "5", "--noflush"], { input: ["*nat", ...lines.map(iptablesLine), "COMMIT", ""].join("\n") });
    const save = () => parseNatTable(ns.exec("iptables-save", ["-t", "nat"]));
    expect(missingRules(rules, save())).toHaveLength(rules.length);
    apply(restoreLines(rules, save()));
    apply(restoreLines(rules, save()));
    const table = save();
    expect(missingRules(rules, table)).toEqual([]);
    expect(table.rules.get("POSTROUTING")).toEqual([rules[0]!.rule]);
    expect(table.rules.get("FLANNEL-POSTRTG")).toEqual(rules.slice(1).map((r) => r.rule));
    // A rule deleted by hand is missing, and the next resync puts the chain back whole.
    ns.exec("iptables", ["-t", "nat", "-D", "FLANNEL-POSTRTG", ...rules[3]!.rule]);
    expect(missingRules(rules, save())).toEqual([`-t nat -A FLANNEL-POSTRTG ${rules[3]!.rule.join(" ")}`]);
    apply(restoreLines(rules, save()));
    expect(save().rules.get("FLANNEL-POSTRTG")).toEqual(rules.slice(1).map((r) => r.rule));
  });
});
