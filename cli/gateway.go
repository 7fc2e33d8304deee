package cli

import (
	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/gateway"
	"github.com/ftfs/ftfs/subjects"
)

func gatewayCmd(e *env) *cobra.Command {
	var cfg gateway.Config
	cmd := &cobra.Command{
		Use:     "gateway",
		GroupID: "servers",
		Short:   "Serve share links over HTTP",
		Long: `The gateway serves the links ` + "`ftfs share`" + ` makes: GET /s/TOKEN downloads the
shared file (with Range requests, so that a video streams and a broken
download resumes), PUT /s/TOKEN/NAME adds a file through an upload-only
link. A link's password is HTTP Basic authentication's (any user name).

It is a NATS client like the CLI, connected with its own identity
("` + subjects.GatewayUser + `"), which may send link requests and nothing else; the file
servers let it in only with the secret in ` + subjects.EnvGatewayPassword + `, which they must
be given too. It keeps no state: run any number of them behind a load
balancer, each fails over between brokers and file servers by itself.
Put it behind a TLS-terminating proxy when it faces a network: links and
passwords cross HTTP in clear otherwise.`,
		Example: "  ftfs gateway --listen 127.0.0.1:8080 --server nats://127.0.0.1:4222",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Servers = e.servers(cmd)
			cfg.Secret = e.getenv(subjects.EnvGatewayPassword)
			cfg.Logger = e.logger(cmd)
			timeout, _ := cmd.Flags().GetDuration("timeout")
			cfg.ClientOptions = []client.Option{client.WithRequestTimeout(timeout)}
			if ca := e.tlsCA(cmd); ca != "" {
				cfg.ClientOptions = append(cfg.ClientOptions, client.WithTLS(ca))
			}
			if cfg.Secret == "" {
				return usagef("%s is not set: the gateway's secret, which the file servers are given too", subjects.EnvGatewayPassword)
			}
			return gateway.Run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "HTTP address to serve the links on")
	return cmd
}
