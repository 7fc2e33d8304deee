package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/internal/bytesize"
	"github.com/ftfs/ftfs/subjects"
)

func statusCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "status",
		GroupID: "session",
		Short:   "Report the file servers, the brokers and the buckets",
		Long: `Report every running file-server instance (role, uptime, requests), every
broker (reachable or not, and which one leads JetStream's meta group), and
the stream of every bucket with its leader and replicas, and the backup's
replica. A READ-ONLY line says that
JetStream has lost its quorum: writes fail until enough brokers are back.
A WARNING line is something to act on, such as a bucket with fewer replicas
than the file servers' --replicas (they raise it; the line says if they
cannot).`,
		Args: cobra.NoArgs,
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, st)
			}
			return printStatus(e.stdout, st)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(out io.Writer, st client.Status) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if st.ReadOnly {
		fmt.Fprintln(w, "READ-ONLY: storage quorum lost: writes fail until enough brokers are back; reads come from the backup's replica")
		fmt.Fprintln(w)
	}
	for _, warning := range st.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warning)
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintln(w)
	}
	printFileServers(w, st)
	fmt.Fprintln(w)
	printBrokers(w, st)
	fmt.Fprintln(w)
	printBuckets(w, st)
	return w.Flush()
}

func printFileServers(w io.Writer, st client.Status) {
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
}

func printBrokers(w io.Writer, st client.Status) {
	fmt.Fprintf(w, "BROKERS (%d up, %d unreachable)\n", len(st.Brokers), len(st.UnreachableBrokers))
	if len(st.Brokers) == 0 {
		// Brokers that predate subjects.BrokerInfo: say what the file
		// servers know of them.
		fmt.Fprintln(w, "no broker answered; the file servers are connected to:")
		fmt.Fprintln(w, "SERVED BY\tBROKER\tURL\tCLUSTER")
		for _, s := range st.Servers {
			fmt.Fprintf(w, "%s (%s)\t%s\t%s\t%s\n", s.Role, s.Instance, s.Broker.Name, s.Broker.URL, s.Broker.Cluster)
		}
		return
	}
	leader := metaLeader(st.Brokers)
	// Only the meta leader tracks how current its followers are.
	peers := map[string]subjects.MetaPeer{}
	for _, r := range st.Brokers {
		if r.Name == leader {
			for _, p := range r.MetaPeers {
				peers[p.Name] = p
			}
		}
	}
	meta := func(name string) string {
		switch p, ok := peers[name]; {
		case name == leader:
			return "meta leader"
		case !ok:
			return "-"
		case p.Offline:
			return "offline"
		case p.Current:
			return "current"
		default:
			return "not current"
		}
	}
	servedBy := map[string][]string{}
	for _, s := range st.Servers {
		servedBy[s.Broker.Name] = append(servedBy[s.Broker.Name], s.Role)
	}
	fmt.Fprintln(w, "NAME\tSTATE\tURL\tMETA\tUPTIME\tCONNECTIONS\tFILE SERVERS\tVERSION")
	for _, r := range st.Brokers {
		state := "up"
		if r.Error != "" {
			state = "up, " + r.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Name, state, r.URL, meta(r.Name),
			time.Since(r.Started).Round(time.Second), r.Connections, orDash(strings.Join(servedBy[r.Name], ", ")), r.Version)
	}
	for _, name := range st.UnreachableBrokers {
		// The meta leader goes on calling a dead peer current for a
		// while: say only what it has noticed.
		m := "-"
		if p, ok := peers[name]; ok && p.Offline {
			m = "offline"
		}
		fmt.Fprintf(w, "%s\tunreachable\t-\t%s\t-\t-\t-\t-\n", name, m)
	}
	if leader == "" && st.Brokers[0].JetStream {
		fmt.Fprintln(w, "warning: no JetStream meta leader: too few brokers are up for a quorum")
	}
}

// metaLeader is the leader most brokers name: during an election they may
// briefly disagree.
func metaLeader(reports []subjects.BrokerReport) string {
	votes := map[string]int{}
	leader := ""
	for _, r := range reports {
		if r.MetaLeader == "" {
			continue
		}
		votes[r.MetaLeader]++
		if votes[r.MetaLeader] > votes[leader] {
			leader = r.MetaLeader
		}
	}
	return leader
}

func printBuckets(w io.Writer, st client.Status) {
	switch {
	case len(st.Buckets) > 0:
		fmt.Fprintf(w, "BUCKETS (%d)\n", len(st.Buckets))
		fmt.Fprintln(w, "BUCKET\tSTREAM\tMESSAGES\tSIZE\tLEADER\tREPLICAS")
		for _, b := range st.Buckets {
			if b.Error != "" {
				fmt.Fprintf(w, "%s\t%s\t-\t-\t-\terror: %s\n", b.Bucket, b.Stream, b.Error)
				continue
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", b.Bucket, b.Stream, b.Messages, bytesize.Human(int64(b.Bytes)), orDash(b.Leader), replicas(b, st.UnreachableBrokers))
		}
	case st.ReadOnly:
		fmt.Fprintln(w, "BUCKETS: not read while storage is read-only")
	default:
		fmt.Fprintln(w, "BUCKETS: no file server reported them")
	}
	for _, s := range st.Servers {
		if s.ReadOnly || len(s.Streams) == 0 || s.Streams[0].Error != "" {
			continue
		}
		b := s.Bucket
		fmt.Fprintln(w)
		fmt.Fprintln(w, "FILES")
		fmt.Fprintf(w, "bucket\t%s\nfiles\t%d\nbytes\t%s\nreplicas\t%d (%s)\nuploads in flight\t%d\n", b.Name, b.Files, bytesize.Human(int64(b.Bytes)), b.Replicas, b.Storage, b.Uploads)
		break
	}
	for _, s := range st.Servers {
		if r := s.Replica; r != nil {
			synced := "not synced yet"
			if !r.Synced.IsZero() {
				synced = "synced " + r.Synced.Local().Format(time.DateTime)
			}
			fmt.Fprintf(w, "backup replica\t%s: %d files, %s, %s\n", r.Dir, r.Files, bytesize.Human(r.Bytes), synced)
		}
	}
}

// replicas describes a stream's followers, or its replica count when it
// has none. A stream leader goes on calling an idle follower current for
// a while after its broker died: a broker known to be unreachable says so.
func replicas(b subjects.StreamStatus, unreachable []string) string {
	if len(b.Peers) == 0 {
		return fmt.Sprintf("R%d", b.Replicas)
	}
	var parts []string
	for _, p := range b.Peers {
		state := "current"
		switch {
		case slices.Contains(unreachable, p.Name):
			state = "unreachable"
		case p.Offline:
			state = "offline"
		case p.Current:
		case p.Lag > 0:
			state = fmt.Sprintf("lagging by %d", p.Lag)
		case p.Active > 0:
			state = fmt.Sprintf("not current, seen %s ago", p.Active.Round(time.Second))
		default:
			state = "not current"
		}
		parts = append(parts, p.Name+" "+state)
	}
	return fmt.Sprintf("R%d: %s", b.Replicas, strings.Join(parts, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
