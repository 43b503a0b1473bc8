// Converts a CNI result between spec versions with the CNI project's own Go library (Debian's
// golang-github-appc-cni-dev): usage `convert <from-version> <to-version> < result.json`. The result
// tests compare weft's printing with its output byte for byte.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/containernetworking/cni/pkg/types/create"
	_ "github.com/containernetworking/cni/pkg/types/020"
	_ "github.com/containernetworking/cni/pkg/types/040"
	_ "github.com/containernetworking/cni/pkg/types/100"
)

func main() {
	data, _ := io.ReadAll(os.Stdin)
	r, err := create.Create(os.Args[1], data)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := r.GetAsVersion(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out.Print()
}
