// pingdf: one ICMP echo with the Don't Fragment bit set (IP_PMTUDISC_DO), for MTU checks. Debian's
// busybox ping cannot set DF, and with the kernel's default (IP_PMTUDISC_WANT) an oversized echo is
// fragmented silently instead of refused.
//
// Usage: pingdf <IPv4 destination> <IP packet size in bytes> [tries]
// Exit 0 when an echo reply arrives; 1 when the send is refused (EMSGSIZE), a "fragmentation
// needed" arrives, or no reply comes within a second per try.
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = (s & 0xffff) + (s >> 16)
	}
	return ^uint16(s)
}

func die(code int, format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "pingdf: "+format+"\n", a...)
	os.Exit(code)
}

func main() {
	if len(os.Args) < 3 {
		die(2, "usage: pingdf <ipv4> <packet-size> [tries]")
	}
	dst := net.ParseIP(os.Args[1]).To4()
	size, err := strconv.Atoi(os.Args[2])
	if dst == nil || err != nil || size < 28 {
		die(2, "bad arguments")
	}
	tries := 3
	if len(os.Args) > 3 {
		tries, _ = strconv.Atoi(os.Args[3])
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
	if err != nil {
		die(2, "socket: %v", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO); err != nil {
		die(2, "IP_MTU_DISCOVER: %v", err)
	}
	tv := syscall.Timeval{Sec: 1}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	id := uint16(os.Getpid())
	sa := &syscall.SockaddrInet4{}
	copy(sa.Addr[:], dst)
	for seq := 1; seq <= tries; seq++ {
		pkt := make([]byte, size-20)
		pkt[0] = 8
		binary.BigEndian.PutUint16(pkt[4:], id)
		binary.BigEndian.PutUint16(pkt[6:], uint16(seq))
		binary.BigEndian.PutUint16(pkt[2:], checksum(pkt))
		if err := syscall.Sendto(fd, pkt, 0, sa); err != nil {
			if err == syscall.EMSGSIZE {
				die(1, "%d-byte packet to %s refused: %v (DF set)", size, dst, err)
			}
			die(1, "send to %s: %v", dst, err)
		}
		deadline := time.Now().Add(time.Second)
		buf := make([]byte, 65536)
		for time.Now().Before(deadline) {
			n, from, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				break
			}
			if n < 28 {
				continue
			}
			ihl := int(buf[0]&0x0f) * 4
			icmp := buf[ihl:n]
			switch {
			case icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id:
				if f, ok := from.(*syscall.SockaddrInet4); ok && net.IP(f.Addr[:]).Equal(dst) {
					fmt.Printf("%d-byte packet to %s: reply\n", size, dst)
					return
				}
			case icmp[0] == 3 && icmp[1] == 4 && len(icmp) >= 36 && binary.BigEndian.Uint16(icmp[32:]) == id:
				die(1, "%d-byte packet to %s: fragmentation needed, next-hop MTU %d", size, dst, binary.BigEndian.Uint16(icmp[6:]))
			}
		}
	}
	die(1, "%d-byte packet to %s: no reply", size, dst)
}
