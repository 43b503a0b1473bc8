import { describe, expect, it } from "vitest";
import { chooseProgram } from "./multicall.js";

const script = (argv: string[]) => ({ sea: false, argv, argv0: "node", execPath: "/usr/bin/node" });
const sea = (argv0: string, execPath: string, ...args: string[]) => ({ sea: true, argv: [execPath, argv0, ...args], argv0, execPath });
const typeOf = (inv: Parameters<typeof chooseProgram>[0]) => chooseProgram(inv)?.type;

describe("chooseProgram", () => {
  it("takes the script form's program from the script path, whatever node is called", () => {
    expect(typeOf(script(["/usr/bin/node", "/opt/cni/bin/host-local"]))).toBe("host-local");
    expect(typeOf(script(["/usr/bin/node", "/opt/cni/bin/weft", "bridge"]))).toBe("bridge");
    expect(typeOf(script(["/usr/bin/node", "bridge"]))).toBe("bridge");
  });

  it("takes the standalone form's program from argv[0] first (a symlink's name), then the executable (a hard link's)", () => {
    expect(typeOf(sea("/opt/cni/bin/portmap", "/opt/weft/weft"))).toBe("portmap");
    expect(typeOf(sea("flannel", "/opt/cni/bin/flannel"))).toBe("flannel");
    expect(typeOf(sea("/proc/self/fd/3", "/opt/cni/bin/loopback"))).toBe("loopback");
  });

  it("lets `weft <program>` name the program explicitly", () => {
    expect(typeOf(sea("./weft", "/tmp/weft", "host-local"))).toBe("host-local");
  });

  it("gives the program its own arguments from argv[2] in every form, the explicit program word removed", () => {
    expect(chooseProgram(sea("./weft", "/tmp/weft", "bridge", "--a", "b"))?.argv).toEqual(["/tmp/weft", "./weft", "--a", "b"]);
    expect(chooseProgram(script(["/usr/bin/node", "/x/weft.cjs", "bridge", "--a"]))?.argv).toEqual(["/usr/bin/node", "/x/weft.cjs", "--a"]);
    // Invoked by its name, a program's arguments are all its own, one that is a program's name too.
    expect(chooseProgram(sea("/opt/cni/bin/bridge", "/opt/weft/weft", "loopback", "--a"))).toEqual({
      type: "bridge",
      argv: ["/opt/weft/weft", "/opt/cni/bin/bridge", "loopback", "--a"],
    });
    expect(chooseProgram(script(["/usr/bin/node", "/opt/cni/bin/bridge", "--a"]))?.argv).toEqual(["/usr/bin/node", "/opt/cni/bin/bridge", "--a"]);
  });

  it("serves the node agent by its name as the CNI plugins, its flags after the name in every form", () => {
    // The image's /weft/flanneld is a symlink to /weft/weft: the name survives in argv[0] only.
    expect(chooseProgram(sea("/weft/flanneld", "/weft/weft", "--ip-masq"))).toEqual({
      type: "flanneld",
      argv: ["/weft/weft", "/weft/flanneld", "--ip-masq"],
    });
    expect(chooseProgram(sea("./weft", "/tmp/weft", "flanneld", "--ip-masq", "--healthz-port=8081"))).toEqual({
      type: "flanneld",
      argv: ["/tmp/weft", "./weft", "--ip-masq", "--healthz-port=8081"],
    });
    expect(chooseProgram(script(["/usr/bin/node", "/usr/local/bin/flanneld", "--ip-masq"]))?.type).toBe("flanneld");
  });

  it("refuses a name that is no program of weft's rather than guessing", () => {
    expect(chooseProgram(sea("./weft", "/tmp/weft"))).toBeUndefined();
    expect(chooseProgram(sea("./weft", "/tmp/weft", "macvlan"))).toBeUndefined();
    expect(chooseProgram(sea("./weft", "/tmp/weft", "--help"))).toBeUndefined();
    expect(chooseProgram(script(["/usr/bin/node", "/opt/cni/bin/bridge.bak"]))).toBeUndefined();
    expect(chooseProgram(script(["/usr/bin/node", "/x/weft", "__proto__"]))).toBeUndefined();
  });
});
