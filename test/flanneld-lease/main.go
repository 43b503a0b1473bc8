// A judge for agent/lease.ts: decodes a lease value into a struct of the shape flanneld stores in
// etcd (pkg/lease LeaseAttrs: field names, types and tags) and prints what Go's encoding/json
// writes for it; or prints a vxlan BackendData. Standard library only.
//
//	flanneld-lease value < value.json
//	flanneld-lease vxlan <vni> <mac>
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

// ip4 marshals as a quoted dotted quad, as flanneld's ip.IP4 (a uint32) does.
type ip4 uint32

func (ip ip4) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`"%s"`, net.IPv4(byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip)))), nil
}

func (ip *ip4) UnmarshalJSON(j []byte) error {
	parsed := net.ParseIP(string(bytes.Trim(j, `"`))).To4()
	if parsed == nil {
		return fmt.Errorf("bad IPv4 %s", j)
	}
	*ip = ip4(uint32(parsed[0])<<24 | uint32(parsed[1])<<16 | uint32(parsed[2])<<8 | uint32(parsed[3]))
	return nil
}

// ip6 marshals as a quoted address; flanneld holds it behind a pointer, so absent is null.
type ip6 net.IP

func (ip ip6) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf(`"%s"`, net.IP(ip))), nil }

func (ip *ip6) UnmarshalJSON(j []byte) error {
	parsed := net.ParseIP(string(bytes.Trim(j, `"`)))
	if parsed == nil {
		return fmt.Errorf("bad IPv6 %s", j)
	}
	*ip = ip6(parsed)
	return nil
}

type leaseAttrs struct {
	PublicIP      ip4
	PublicIPv6    *ip6
	BackendType   string          `json:",omitempty"`
	BackendData   json.RawMessage `json:",omitempty"`
	BackendV6Data json.RawMessage `json:",omitempty"`
}

type hardwareAddr net.HardwareAddr

func (hw hardwareAddr) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%q", net.HardwareAddr(hw))), nil
}

type vxlanLeaseAttrs struct {
	VNI     uint16
	VtepMAC hardwareAddr
}

func main() {
	var out []byte
	var err error
	switch os.Args[1] {
	case "value":
		var in []byte
		if in, err = io.ReadAll(os.Stdin); err == nil {
			var attrs leaseAttrs
			if err = json.Unmarshal(in, &attrs); err == nil {
				out, err = json.Marshal(&attrs)
			}
		}
	case "vxlan":
		var vni uint64
		var mac net.HardwareAddr
		if vni, err = strconv.ParseUint(os.Args[2], 10, 16); err == nil {
			if mac, err = net.ParseMAC(os.Args[3]); err == nil {
				out, err = json.Marshal(&vxlanLeaseAttrs{VNI: uint16(vni), VtepMAC: hardwareAddr(mac)})
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
