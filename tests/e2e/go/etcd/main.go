// Command etcd is a thin wrapper that builds the upstream etcd server from the
// Go module proxy (the etcd repository's own main package lives in a module
// with replace directives). Built by tests/e2e/deps.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
