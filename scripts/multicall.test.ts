import { describe, expect, it } from "vitest";
import { chooseType } from "./multicall.js";

const script = (argv: string[]) => ({ sea: false, argv, argv0: "node", execPath: "/usr/bin/node" });
const sea = (argv0: string, execPath: string, ...args: string[]) => ({ sea: true, argv: [execPath, argv0, ...args], argv0, execPath });

describe("chooseType", () => {
  it("takes the script form's type from the script path, whatever node is called", () => {
    expect(chooseType(script(["/usr/bin/node", "/opt/cni/bin/host-local"]))).toBe("host-local");
    expect(chooseType(script(["/usr/bin/node", "/opt/cni/bin/weft", "bridge"]))).toBe("bridge");
    expect(chooseType(script(["/usr/bin/node", "bridge"]))).toBe("bridge");
  });

  it("takes the standalone form's type from argv[0] first (a symlink's name), then the executable (a hard link's)", () => {
    expect(chooseType(sea("/opt/cni/bin/portmap", "/opt/weft/weft"))).toBe("portmap");
    expect(chooseType(sea("flannel", "/opt/cni/bin/flannel"))).toBe("flannel");
    expect(chooseType(sea("/proc/self/fd/3", "/opt/cni/bin/loopback"))).toBe("loopback");
  });

  it("lets `weft <type>` name the type explicitly", () => {
    expect(chooseType(sea("./weft", "/tmp/weft", "host-local"))).toBe("host-local");
  });

  it("refuses a name that is no CNI type rather than guessing", () => {
    expect(chooseType(sea("./weft", "/tmp/weft"))).toBeUndefined();
    expect(chooseType(sea("./weft", "/tmp/weft", "macvlan"))).toBeUndefined();
    expect(chooseType(script(["/usr/bin/node", "/opt/cni/bin/bridge.bak"]))).toBeUndefined();
    expect(chooseType(script(["/usr/bin/node", "/x/weft", "__proto__"]))).toBeUndefined();
  });
});
