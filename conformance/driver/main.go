// weft-cni-driver: a container runtime's CNI side, reduced to a command line.
//
// It drives network lists through Debian's libcni (1.1.2) the way containerd (go-cni) and CRI-O
// (ocicni) do: AddNetworkList / CheckNetworkList / DelNetworkList, libcni's result cache
// (cniCacheV1) in a directory of the caller's choosing, prevResult injection, capability args
// filtered by each plugin's "capabilities", and version conversion of cached results.
//
// libcni 1.1.2 predates spec 1.1.0: it has no GC or STATUS and cannot parse a 1.1.0 result. For
// lists whose cniVersion is newer than the library (or when DRIVER_DIRECT=1), the chain is executed
// here the way libcni >= 1.2 does it, with the same cache file, so that ADD/CHECK/DEL/GC/STATUS can
// be exercised at 1.1.0.
//
// Usage:
//
//	driver add|check|del <network> <containerID> <netnsPath> [ifname]
//	driver cached <network> <containerID> [ifname]
//	driver gc <network> [<containerID>/<ifname> ...]     (the valid attachments)
//	driver status <network>
//	driver version <plugin-type>
//
// Environment: NETCONFPATH (conflist dir), CNI_PATH (plugin dirs, ':'-separated), CNI_CACHE_DIR
// (libcni's cache dir; required so the host's /var/lib/cni is never used), CAP_ARGS (JSON object of
// capability args, e.g. {"portMappings":[...]}), CNI_ARGS ("K=V;K=V"), DRIVER_DIRECT=1,
// DRIVER_LIBCNI=1 (use libcni even for versions it cannot parse),
// DRIVER_CURRENT=1 (convert the ADD result to the library's current version, as go-cni does).
//
// Success: the result JSON (add, cached) or nothing on stdout, exit 0. Failure: a JSON object
// {"code": N, "msg": "...", "details": "...", "error": "<whole error chain>"} on stdout (code is 0
// when the error did not come from a plugin), exit 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

type env struct {
	confDir  string
	path     []string
	cacheDir string
	capArgs  map[string]interface{}
	cniArgs  [][2]string
	direct   bool
	current  bool
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	e, err := loadEnv()
	if err != nil {
		fail(err)
	}
	if err := run(context.Background(), e, os.Args[1], os.Args[2:]); err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: driver add|check|del <network> <containerID> <netnsPath> [ifname]\n"+
		"       driver cached <network> <containerID> [ifname]\n"+
		"       driver gc <network> [<containerID>/<ifname> ...]\n"+
		"       driver status <network>\n"+
		"       driver version <plugin-type>")
	os.Exit(2)
}

func loadEnv() (*env, error) {
	e := &env{
		confDir:  os.Getenv("NETCONFPATH"),
		cacheDir: os.Getenv("CNI_CACHE_DIR"),
		direct:   os.Getenv("DRIVER_DIRECT") == "1",
		current:  os.Getenv("DRIVER_CURRENT") == "1",
	}
	if e.confDir == "" {
		return nil, errors.New("NETCONFPATH (the conflist directory) is not set")
	}
	if e.cacheDir == "" {
		return nil, errors.New("CNI_CACHE_DIR is not set: refusing to use the host's /var/lib/cni")
	}
	for _, p := range filepath.SplitList(os.Getenv("CNI_PATH")) {
		if p != "" {
			e.path = append(e.path, p)
		}
	}
	if len(e.path) == 0 {
		return nil, errors.New("CNI_PATH is not set")
	}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &e.capArgs); err != nil {
			return nil, fmt.Errorf("CAP_ARGS is not a JSON object: %w", err)
		}
	}
	if s := os.Getenv("CNI_ARGS"); s != "" {
		for _, kv := range strings.Split(s, ";") {
			parts := strings.SplitN(kv, "=", 2)
			if len(parts) != 2 {
				return nil, fmt.Errorf("CNI_ARGS: %q is not K=V", kv)
			}
			e.cniArgs = append(e.cniArgs, [2]string{parts[0], parts[1]})
		}
	}
	return e, nil
}

func run(ctx context.Context, e *env, verb string, args []string) error {
	cni := libcni.NewCNIConfigWithCacheDir(e.path, e.cacheDir, nil)
	if verb == "version" {
		info, err := cni.GetVersionInfo(ctx, args[0])
		if err != nil {
			return err
		}
		return printJSON(map[string]interface{}{"supportedVersions": info.SupportedVersions()})
	}

	list, err := libcni.LoadConfList(e.confDir, args[0])
	if err != nil {
		return err
	}
	direct := e.direct || (newerThanLibrary(list.CNIVersion) && os.Getenv("DRIVER_LIBCNI") != "1")
	if direct && verb != "gc" && verb != "status" {
		fmt.Fprintf(os.Stderr, "driver: list %q (cniVersion %s) executed directly, not by libcni (which stops at %s)\n",
			list.Name, list.CNIVersion, version.Current())
	}

	switch verb {
	case "add", "check", "del":
		if len(args) < 3 {
			usage()
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    args[1],
			NetNS:          args[2],
			IfName:         ifName(args, 3),
			Args:           e.cniArgs,
			CapabilityArgs: e.capArgs,
		}
		d := &directRuntime{cni: cni, e: e, list: list}
		switch {
		case verb == "add" && direct:
			return d.add(ctx, rt)
		case verb == "add":
			result, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				return err
			}
			if e.current {
				if result, err = types100.NewResultFromResult(result); err != nil {
					return err
				}
			}
			return printJSON(result)
		case verb == "check" && direct:
			return d.check(ctx, rt)
		case verb == "check":
			return cni.CheckNetworkList(ctx, list, rt)
		case verb == "del" && direct:
			return d.del(ctx, rt)
		default:
			return cni.DelNetworkList(ctx, list, rt)
		}
	case "cached":
		if len(args) < 2 {
			usage()
		}
		rt := &libcni.RuntimeConf{ContainerID: args[1], IfName: ifName(args, 2)}
		if direct {
			info, err := readCache(e.cacheDir, list.Name, rt)
			if err != nil || info == nil {
				return err
			}
			return printJSON(info.RawResult)
		}
		result, err := cni.GetNetworkListCachedResult(list, rt)
		if err != nil {
			return err
		}
		if result == nil {
			return errors.New("no cached result")
		}
		return printJSON(result)
	case "gc":
		d := &directRuntime{cni: cni, e: e, list: list}
		return d.gc(ctx, args[1:])
	case "status":
		d := &directRuntime{cni: cni, e: e, list: list}
		return d.status(ctx)
	}
	usage()
	return nil
}

func ifName(args []string, i int) string {
	if len(args) > i && args[i] != "" {
		return args[i]
	}
	return "eth0"
}

func newerThanLibrary(v string) bool {
	if v == "" {
		return false
	}
	ge, err := version.GreaterThanOrEqualTo(v, version.Current())
	return err == nil && ge && v != version.Current()
}

func printJSON(v interface{}) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

func fail(err error) {
	out := map[string]interface{}{"code": 0, "error": err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		out["code"] = cniErr.Code
		out["msg"] = cniErr.Msg
		out["details"] = cniErr.Details
	}
	_ = printJSON(out)
	fmt.Fprintln(os.Stderr, "driver:", err)
	os.Exit(1)
}

// directRuntime runs a list the way a spec-1.1 runtime (libcni >= 1.2) does, without parsing
// results into libcni 1.1.2's types: each plugin gets the previous raw result as prevResult.
type directRuntime struct {
	cni  *libcni.CNIConfig
	e    *env
	list *libcni.NetworkConfigList
}

// cacheEntry is libcni's cniCacheV1 file, so libcni and the direct path share one cache.
type cacheEntry struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	Config         []byte                 `json:"config"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	NetNS          string                 `json:"netns,omitempty"`
	CniArgs        [][2]string            `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs,omitempty"`
	RawResult      map[string]interface{} `json:"result,omitempty"`
}

func cachePath(dir, net, cid, ifname string) string {
	return filepath.Join(dir, "results", fmt.Sprintf("%s-%s-%s", net, cid, ifname))
}

func readCache(dir, net string, rt *libcni.RuntimeConf) (*cacheEntry, error) {
	b, err := ioutil.ReadFile(cachePath(dir, net, rt.ContainerID, rt.IfName))
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var c cacheEntry
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("cache file of %s/%s: %w", rt.ContainerID, rt.IfName, err)
	}
	return &c, nil
}

func (d *directRuntime) pluginConf(net *libcni.NetworkConfig, prevResult map[string]interface{}, capArgs map[string]interface{}) ([]byte, error) {
	inject := map[string]interface{}{"name": d.list.Name, "cniVersion": d.list.CNIVersion}
	if prevResult != nil {
		inject["prevResult"] = prevResult
	}
	rc := map[string]interface{}{}
	for capability, supported := range net.Network.Capabilities {
		if v, ok := capArgs[capability]; ok && supported {
			rc[capability] = v
		}
	}
	if len(rc) > 0 {
		inject["runtimeConfig"] = rc
	}
	conf, err := libcni.InjectConf(net, inject)
	if err != nil {
		return nil, err
	}
	return conf.Bytes, nil
}

func (d *directRuntime) exec(ctx context.Context, net *libcni.NetworkConfig, stdin []byte, environ []string) ([]byte, error) {
	path, err := invoke.FindInPath(net.Network.Type, d.e.path)
	if err != nil {
		return nil, err
	}
	raw := &invoke.RawExec{Stderr: os.Stderr}
	return raw.ExecPlugin(ctx, path, stdin, environ)
}

func (d *directRuntime) attachmentEnv(verb string, rt *libcni.RuntimeConf) []string {
	args := &invoke.Args{
		Command: verb, ContainerID: rt.ContainerID, NetNS: rt.NetNS, IfName: rt.IfName,
		PluginArgs: rt.Args, Path: strings.Join(d.e.path, ":"),
	}
	return args.AsEnv()
}

func (d *directRuntime) add(ctx context.Context, rt *libcni.RuntimeConf) error {
	var result map[string]interface{}
	for _, net := range d.list.Plugins {
		stdin, err := d.pluginConf(net, result, rt.CapabilityArgs)
		if err != nil {
			return err
		}
		out, err := d.exec(ctx, net, stdin, d.attachmentEnv("ADD", rt))
		if err != nil {
			return fmt.Errorf("plugin type=%q failed (add): %w", net.Network.Type, err)
		}
		result = map[string]interface{}{}
		if err := json.Unmarshal(out, &result); err != nil {
			return fmt.Errorf("plugin type=%q (add) printed no JSON result: %w", net.Network.Type, err)
		}
	}
	entry := cacheEntry{
		Kind: "cniCacheV1", ContainerID: rt.ContainerID, Config: d.list.Bytes, IfName: rt.IfName,
		NetworkName: d.list.Name, NetNS: rt.NetNS, CniArgs: rt.Args, CapabilityArgs: rt.CapabilityArgs,
		RawResult: result,
	}
	b, err := json.Marshal(&entry)
	if err != nil {
		return err
	}
	file := cachePath(d.e.cacheDir, d.list.Name, rt.ContainerID, rt.IfName)
	if err := os.MkdirAll(filepath.Dir(file), 0700); err != nil {
		return err
	}
	if err := ioutil.WriteFile(file, b, 0600); err != nil {
		return err
	}
	return printJSON(result)
}

func (d *directRuntime) check(ctx context.Context, rt *libcni.RuntimeConf) error {
	if d.list.DisableCheck {
		return nil
	}
	cached, err := readCache(d.e.cacheDir, d.list.Name, rt)
	if err != nil {
		return err
	}
	if cached == nil {
		return fmt.Errorf("no cached result for %s/%s: CHECK needs the ADD result", rt.ContainerID, rt.IfName)
	}
	for _, net := range d.list.Plugins {
		stdin, err := d.pluginConf(net, cached.RawResult, cached.CapabilityArgs)
		if err != nil {
			return err
		}
		if _, err := d.exec(ctx, net, stdin, d.attachmentEnv("CHECK", rt)); err != nil {
			return fmt.Errorf("plugin type=%q failed (check): %w", net.Network.Type, err)
		}
	}
	return nil
}

func (d *directRuntime) del(ctx context.Context, rt *libcni.RuntimeConf) error {
	cached, err := readCache(d.e.cacheDir, d.list.Name, rt)
	if err != nil {
		return err
	}
	var prev map[string]interface{}
	capArgs := rt.CapabilityArgs
	if cached != nil {
		prev = cached.RawResult
		if capArgs == nil {
			capArgs = cached.CapabilityArgs
		}
	}
	for i := len(d.list.Plugins) - 1; i >= 0; i-- {
		net := d.list.Plugins[i]
		stdin, err := d.pluginConf(net, prev, capArgs)
		if err != nil {
			return err
		}
		if _, err := d.exec(ctx, net, stdin, d.attachmentEnv("DEL", rt)); err != nil {
			return fmt.Errorf("plugin type=%q failed (delete): %w", net.Network.Type, err)
		}
	}
	err = os.Remove(cachePath(d.e.cacheDir, d.list.Name, rt.ContainerID, rt.IfName))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// gc follows libcni >= 1.2 GCNetworkList: a synthesized DEL for every cached attachment of this
// network that is not valid, then GC (spec >= 1.1.0) to every plugin with the valid list; every
// plugin runs even if one fails, and all errors are returned.
func (d *directRuntime) gc(ctx context.Context, valid []string) error {
	type attachment struct {
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
	}
	attachments := []attachment{}
	isValid := map[string]bool{}
	for _, v := range valid {
		parts := strings.SplitN(v, "/", 2)
		if len(parts) != 2 {
			return fmt.Errorf("valid attachment %q is not <containerID>/<ifname>", v)
		}
		attachments = append(attachments, attachment{parts[0], parts[1]})
		isValid[v] = true
	}
	var errs []string
	files, _ := filepath.Glob(filepath.Join(d.e.cacheDir, "results", d.list.Name+"-*"))
	sort.Strings(files)
	for _, f := range files {
		b, err := ioutil.ReadFile(f)
		if err != nil {
			continue
		}
		var c cacheEntry
		if json.Unmarshal(b, &c) != nil || c.NetworkName != d.list.Name || isValid[c.ContainerID+"/"+c.IfName] {
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: c.ContainerID, NetNS: c.NetNS, IfName: c.IfName, Args: c.CniArgs, CapabilityArgs: c.CapabilityArgs}
		var err2 error
		if newerThanLibrary(d.list.CNIVersion) || d.e.direct {
			err2 = d.del(ctx, rt)
		} else {
			err2 = d.cni.DelNetworkList(ctx, d.list, rt)
		}
		if err2 != nil {
			errs = append(errs, err2.Error())
		}
	}
	if ge, err := version.GreaterThanOrEqualTo(d.list.CNIVersion, "1.1.0"); err != nil || !ge {
		return joinErrs(errs)
	}
	for _, net := range d.list.Plugins {
		conf, err := libcni.InjectConf(net, map[string]interface{}{
			"name": d.list.Name, "cniVersion": d.list.CNIVersion,
			"cni.dev/valid-attachments": attachments, "cni.dev/attachments": attachments,
		})
		if err != nil {
			return err
		}
		environ := []string{"CNI_COMMAND=GC", "CNI_PATH=" + strings.Join(d.e.path, ":"), "PATH=" + os.Getenv("PATH")}
		if _, err := d.exec(ctx, net, conf.Bytes, environ); err != nil {
			errs = append(errs, fmt.Sprintf("plugin type=%q failed (gc): %v", net.Network.Type, err))
		}
	}
	return joinErrs(errs)
}

// status follows libcni >= 1.2 GetStatusNetworkList: STATUS (spec >= 1.1.0) to each plugin,
// stopping at the first error.
func (d *directRuntime) status(ctx context.Context) error {
	if ge, err := version.GreaterThanOrEqualTo(d.list.CNIVersion, "1.1.0"); err != nil || !ge {
		return fmt.Errorf("configuration version %q does not support the STATUS command", d.list.CNIVersion)
	}
	for _, net := range d.list.Plugins {
		conf, err := libcni.InjectConf(net, map[string]interface{}{"name": d.list.Name, "cniVersion": d.list.CNIVersion})
		if err != nil {
			return err
		}
		environ := []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + strings.Join(d.e.path, ":"), "PATH=" + os.Getenv("PATH")}
		if _, err := d.exec(ctx, net, conf.Bytes, environ); err != nil {
			return fmt.Errorf("plugin type=%q failed (status): %w", net.Network.Type, err)
		}
	}
	return nil
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}
