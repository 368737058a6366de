// Command kubectl is a thin wrapper that builds upstream kubectl from the Go
// module proxy (k8s.io/kubectl has no replace directives). Built by
// tests/e2e/deps.sh; version strings are injected with -ldflags.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	os.Exit(cli.Run(command))
}
