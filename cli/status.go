package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
)

func statusCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "status",
		GroupID: "session",
		Short:   "Report the file servers, the broker(s) and the bucket",
		Long: `Report every running file-server instance (role, uptime, requests), the
brokers the servers are connected to, and the files bucket with its replicas:
what the old intermediate server monitored, as a report.`,
		Args: cobra.NoArgs,
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, st)
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "FILE SERVERS (%d)\n", len(st.Instances))
			errs := map[string]string{}
			for _, s := range st.Servers {
				errs[s.Instance] = fmt.Sprint(s.Errors)
			}
			fmt.Fprintln(w, "ROLE\tINSTANCE\tVERSION\tUPTIME\tREQUESTS\tERRORS")
			for _, in := range st.Instances {
				req, _ := in.Requests()
				e, ok := errs[in.ID]
				if !ok {
					e = "?"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", in.Role, in.ID, in.Version, time.Since(in.Started).Round(time.Second), req, e)
			}
			if len(st.Instances) < 2 {
				fmt.Fprintln(w, "warning: fewer than two file servers: no fault tolerance right now")
			}
			fmt.Fprintln(w)
			fmt.Fprintln(w, "BROKERS")
			fmt.Fprintln(w, "SERVED BY\tBROKER\tURL\tCLUSTER")
			for _, s := range st.Servers {
				fmt.Fprintf(w, "%s (%s)\t%s\t%s\t%s\n", s.Role, s.Instance, s.Broker.Name, s.Broker.URL, s.Broker.Cluster)
			}
			if len(st.Servers) > 0 {
				b := st.Servers[0].Bucket
				fmt.Fprintln(w)
				fmt.Fprintln(w, "BUCKET")
				fmt.Fprintf(w, "name\t%s\nfiles\t%d\nbytes\t%s\nreplicas\t%d (%s)\nuploads in flight\t%d\n", b.Name, b.Files, humanSize(int64(b.Bytes)), b.Replicas, b.Storage, b.Uploads)
				if b.Leader != "" {
					fmt.Fprintf(w, "leader\t%s\n", b.Leader)
				}
				for _, p := range b.Peers {
					state := "current"
					if !p.Current {
						state = fmt.Sprintf("lagging by %d", p.Lag)
					}
					fmt.Fprintf(w, "replica\t%s %s\n", p.Name, state)
				}
				for _, s := range st.Servers {
					if s.Replica != nil {
						fmt.Fprintf(w, "backup replica\t%s: %d files, %s, synced %s\n", s.Replica.Dir, s.Replica.Files, humanSize(s.Replica.Bytes), s.Replica.Synced.Local().Format(time.DateTime))
					}
				}
			}
			return w.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
