package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/fileserver"
)

func versionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		GroupID: "session",
		Short:   "Print the versions of ftfs, its wire protocol and the NATS server it embeds",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(e.stdout, "ftfs %s (protocol v1, nats-server %s, %s)\n", fileserver.Version, server.VERSION, buildOf())
			return nil
		},
	}
}

// buildOf names the commit the binary was built from, as the go command
// recorded it, or the Go version alone when it recorded none (go run).
func buildOf() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown build"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+changes"
			}
		}
	}
	if rev == "" {
		return info.GoVersion
	}
	return fmt.Sprintf("commit %.12s%s, %s", rev, modified, info.GoVersion)
}
