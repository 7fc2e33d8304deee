package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/certs"
	"github.com/ftfs/ftfs/subjects"
)

func certsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "certs",
		GroupID: "servers",
		Short:   "Make TLS certificates for development",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(certsDevCmd(e))
	return cmd
}

func certsDevCmd(e *env) *cobra.Command {
	var hosts []string
	cmd := &cobra.Command{
		Use:   "dev DIR",
		Short: "Write a development CA and a broker certificate into DIR",
		Long: `Write a new CA (` + certs.CAFile + `, ` + certs.CAKeyFile + `) and a certificate it signed
(` + certs.CertFile + `, ` + certs.KeyFile + `) into DIR. The certificate is valid for
localhost, 127.0.0.1 and ::1 and every --host, for a year, and serves both
for the brokers' client port and for the routes between brokers. The keys
are written readable by their owner only; existing files are never
replaced.

Run the brokers with --tls-cert, --tls-key and --tls-ca, and give every
other process the CA with --tls-ca or ` + subjects.EnvTLSCA + `.`,
		Example: `  ftfs certs dev ./data/certs
  ftfs broker --tls-cert ./data/certs/server.pem --tls-key ./data/certs/server-key.pem
  ` + subjects.EnvTLSCA + `=./data/certs/ca.pem ftfs ls`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			dir := args[0]
			b, err := certs.Dev(dir, hosts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s, %s, %s and %s in %s\n", certs.CAFile, certs.CAKeyFile, certs.CertFile, certs.KeyFile, dir)
			fmt.Fprintf(e.stdout, "valid for %s until %s\n", strings.Join(b.Hosts, ", "), b.NotAfter.Local().Format("2006-01-02"))
			fmt.Fprintf(e.stdout, "clients: --tls-ca %s (or %s)\n", filepath.Join(dir, certs.CAFile), subjects.EnvTLSCA)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "another host name or IP address the certificate is valid for (repeatable)")
	return cmd
}
