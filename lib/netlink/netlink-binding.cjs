// Stands in for node-gyp-build inside the bundle: the netlink package calls
// require("node-gyp-build")(dir) for its binding, and gets the embedded one instead.
const { loadEmbeddedAddon } = require("../native/native.ts");

module.exports = function netlinkBinding() {
  return loadEmbeddedAddon(require("weft-native:netlink"));
};
