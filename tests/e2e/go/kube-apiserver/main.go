// Command kube-apiserver is a thin wrapper that builds the upstream
// kube-apiserver from the Go module proxy. k8s.io/kubernetes replaces its
// staging modules with ./staging/..., which a dependent module cannot use, so
// go.mod pins each staging module to its published v0.36.3 release instead.
// Built by tests/e2e/deps.sh; version strings are injected with -ldflags.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	os.Exit(cli.Run(command))
}
