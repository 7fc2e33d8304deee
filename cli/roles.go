package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/backup"
	"github.com/ftfs/ftfs/broker"
	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/internal/bytesize"
	"github.com/ftfs/ftfs/subjects"
)

func brokerCmd(e *env) *cobra.Command {
	var cfg broker.Config
	var routes string
	cmd := &cobra.Command{
		Use:     "broker",
		GroupID: "servers",
		Short:   "Run the NATS broker with JetStream (one node, or a cluster member)",
		Long: `Run the embedded NATS server with JetStream on disk.

The service password (` + subjects.EnvServicePassword + `) is required: the file servers
use it to log in and to sign user authorizations. ` + subjects.EnvSystemPassword + `, if
set, enables the NATS system user "` + subjects.SystemUser + `" (for 'nats server report').

--config loads a standard nats-server configuration file; flags given
explicitly override it.

--tls-cert and --tls-key make clients connect with TLS; with --tls-ca the
routes between brokers use TLS as well ('ftfs certs dev DIR' makes
development certificates). A tls block in --config works as in nats-server.`,
		Example: `  ftfs broker
  ftfs broker --name n1 --cluster ftfs --cluster-port 6222 \
      --routes nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.ServicePassword = e.getenv(subjects.EnvServicePassword)
			cfg.SystemPassword = e.getenv(subjects.EnvSystemPassword)
			if routes != "" {
				cfg.Routes = strings.Split(routes, ",")
			}
			cfg.Logger = e.logger(cmd)
			if cfg.ServicePassword == "" && cfg.ConfigFile == "" {
				return fmt.Errorf("%s is not set: the broker needs the service password the file servers use", subjects.EnvServicePassword)
			}
			return broker.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Host, "host", "127.0.0.1", "listen host")
	f.IntVar(&cfg.Port, "port", 4222, "client port")
	f.IntVar(&cfg.HTTPPort, "http-port", 8222, "HTTP monitoring port (/healthz, /varz, ...)")
	f.StringVar(&cfg.HTTPHost, "http-host", "127.0.0.1", "host the monitoring port listens on (it shows user and connection names: keep it private)")
	f.StringVar(&cfg.Monitor, "monitor", broker.MonitorFull, "what the monitoring port serves: full (every nats-server endpoint), health (/healthz only) or off")
	f.StringVar(&cfg.DataDir, "data-dir", "./data/broker", "JetStream data directory")
	f.StringVar(&cfg.ConfigFile, "config", "", "nats-server configuration file")
	f.StringVar(&cfg.Name, "name", "", "server name (unique within a cluster)")
	f.StringVar(&cfg.Cluster, "cluster", "", "cluster name (empty: no cluster)")
	f.StringVar(&cfg.ClusterHost, "cluster-host", "", "cluster listen host (default: --host)")
	f.IntVar(&cfg.ClusterPort, "cluster-port", 6222, "cluster port")
	f.StringVar(&routes, "routes", "", "routes to the other cluster members, comma separated")
	f.DurationVar(&cfg.PingInterval, "ping-interval", 0, "client ping interval (default 2s)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate file: clients must connect with TLS")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "key file of --tls-cert")
	// Shadows the persistent --tls-ca: a broker verifies its peers, not a
	// broker it connects to as a client, and does not read the
	// environment, so that a CA exported for the clients does not turn
	// route TLS on by itself.
	f.StringVar(&cfg.TLSCA, "tls-ca", "", "CA file that signed the other brokers' certificates: routes use TLS with --tls-cert and require it")
	return cmd
}

// serviceFlags are the flags both file server roles take.
func serviceFlags(cmd *cobra.Command, cfg *fileserver.Config) {
	f := cmd.Flags()
	f.IntVar(&cfg.Replicas, "replicas", 1, "JetStream replicas of the buckets it creates (3 on a cluster)")
	f.StringVar(&cfg.Bucket, "bucket", subjects.FilesBucket, "object store bucket for file content")
	f.DurationVar(&cfg.SessionTTL, "session-ttl", subjects.SessionTTL, "how long a login lasts")
	f.DurationVar(&cfg.UploadIdle, "upload-idle", subjects.UploadIdle, "abort an unfinished upload idle this long")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "HOST:PORT to serve Prometheus metrics (/metrics) and health checks (/healthz, /healthz/write) on over HTTP; keep it on loopback (empty: off)")
	f.StringVar(&cfg.IndexDir, "index-dir", "./data/index", "where to keep a snapshot of the files index, so that a start reads only what changed since (servers may share it; empty: none)")
	limitFlags(cmd, cfg)
	loginFlags(cmd, cfg)
}

// loginFlags are the login throttle's flags (shared by every file server
// through storage; give every server the same values).
func loginFlags(cmd *cobra.Command, cfg *fileserver.Config) {
	f := cmd.Flags()
	f.DurationVar(&cfg.LoginBackoff, "login-backoff", fileserver.DefaultLoginBackoff,
		fmt.Sprintf("wait after %d failed logins for a user name; doubles with each further failure, up to a minute", fileserver.LoginFree))
	f.IntVar(&cfg.LoginLockAfter, "login-lock-after", fileserver.DefaultLoginLockAfter, "failed logins that lock a user name")
	f.DurationVar(&cfg.LoginLock, "login-lock", fileserver.DefaultLoginLock, "how long a locked user name stays locked (at most 24h)")
}

// limitFlags are the per-user limits (fileserver.Config); 0 is unlimited.
// Give both file servers the same.
func limitFlags(cmd *cobra.Command, cfg *fileserver.Config) {
	f := cmd.Flags()
	cfg.MaxFileSize = fileserver.DefaultMaxFileSize
	f.Var(sizeFlag{&cfg.MaxFileSize}, "max-file-size", "largest file a user may store, e.g. 10GiB or 500MB; 0: no limit")
	f.Var(sizeFlag{&cfg.UserQuota}, "user-quota", "bytes each user may store in files and unfinished uploads; 0: no limit")
	f.IntVar(&cfg.MaxTransfers, "max-transfers", fileserver.DefaultMaxTransfers, "uploads and downloads each user may run at once; 0: no limit")
	f.IntVar(&cfg.MaxOpenUploads, "max-open-uploads", fileserver.DefaultMaxOpenUploads, "unfinished uploads each user may have; 0: no limit")
}

// sizeFlag is a byte count flag that takes sizes such as 4096, 512K,
// 10GiB or 500MB (bytesize.Parse).
type sizeFlag struct{ p *int64 }

func (f sizeFlag) String() string {
	if f.p == nil || *f.p == 0 {
		return "0"
	}
	return bytesize.Format(*f.p)
}

func (f sizeFlag) Set(v string) error {
	n, err := bytesize.Parse(v)
	if err != nil {
		return err
	}
	*f.p = n
	return nil
}

func (f sizeFlag) Type() string { return "size" }

func (e *env) serviceConfig(cmd *cobra.Command, cfg *fileserver.Config) error {
	cfg.Servers = e.servers(cmd)
	cfg.ServicePassword = e.getenv(subjects.EnvServicePassword)
	cfg.AdminPassword = e.getenv(subjects.EnvAdminPassword)
	cfg.GatewayPassword = e.getenv(subjects.EnvGatewayPassword)
	cfg.TLSCA = e.tlsCA(cmd)
	cfg.Logger = e.logger(cmd)
	if cfg.ServicePassword == "" {
		return fmt.Errorf("%s is not set: the file server needs the service password the broker knows", subjects.EnvServicePassword)
	}
	return nil
}

const serviceLong = `The file server answers the ftfs requests (a NATS micro service "ftfs",
queue group "ftfs") and authorizes user connections for the broker (auth
callout). It needs ` + subjects.EnvServicePassword + `; ` + subjects.EnvAdminPassword + ` creates the user
"admin" when no user exists yet.`

func primaryCmd(e *env) *cobra.Command {
	var cfg fileserver.Config
	cmd := &cobra.Command{
		Use:     "primary",
		GroupID: "servers",
		Short:   "Run the primary file server",
		Long:    serviceLong,
		Example: "  ftfs primary --server nats://127.0.0.1:4222",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.serviceConfig(cmd, &cfg); err != nil {
				return err
			}
			cfg.Role = fileserver.RolePrimary
			return fileserver.Run(cmd.Context(), cfg)
		},
	}
	serviceFlags(cmd, &cfg)
	return cmd
}

func backupCmd(e *env) *cobra.Command {
	var cfg backup.Config
	cmd := &cobra.Command{
		Use:     "backup",
		GroupID: "servers",
		Short:   "Run the backup file server, with a plain-file replica of every file",
		Long: serviceLong + `

The backup also keeps a plain-file copy of every stored file in
--replica-dir, each checked against its SHA-256 and written atomically, and
catches up after a restart.`,
		Example: "  ftfs backup --server nats://127.0.0.1:4222 --replica-dir ./data/backup",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.serviceConfig(cmd, &cfg.Service); err != nil {
				return err
			}
			cfg.Service.Role = fileserver.RoleBackup
			return backup.Run(cmd.Context(), cfg)
		},
	}
	serviceFlags(cmd, &cfg.Service)
	cmd.Flags().StringVar(&cfg.ReplicaDir, "replica-dir", "./data/backup", "directory of the plain-file replica")
	return cmd
}

func restoreCmd(e *env) *cobra.Command {
	var cfg backup.RestoreConfig
	cmd := &cobra.Command{
		Use:     "restore --from DIR",
		GroupID: "servers",
		Short:   "Load a backup's replica dir into an empty files bucket",
		Long: `Load the plain-file replica a backup keeps (--replica-dir) into an empty files
bucket: the way back from a total loss of the JetStream data. Every file is
checked against the digest the replica recorded and keeps its owner and its
modification time; a copy that no longer matches is left out and reported.
Needs ` + subjects.EnvServicePassword + `.

The bucket is made with --replicas replicas, as the file servers would make
it; without --replicas, 1 on a single broker and, on a cluster, one per
broker up to 3. A bucket that exists with fewer replicas than --replicas is
raised to them. Files the bucket already holds with the replica's content are
left as they are, so a restore that stopped can be run again; any other file
in the bucket stops it.

Every call to the brokers has a deadline and is retried while the cluster
is electing leaders (--call-timeout, --step-timeout). Progress goes to
stderr, the summary to stdout.`,
		Example: `  ftfs restore --from ./data/backup
  ftfs restore --from ./data/backup --replicas 3 --server nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Servers = e.servers(cmd)
			cfg.ServicePassword = e.getenv(subjects.EnvServicePassword)
			cfg.TLSCA = e.tlsCA(cmd)
			cfg.Logger = e.logger(cmd)
			if cfg.ServicePassword == "" {
				return fmt.Errorf("%s is not set: restore writes with the file servers' identity", subjects.EnvServicePassword)
			}
			if cfg.Dir == "" {
				return usagef("restore needs --from DIR")
			}
			if cfg.Replicas < 0 || cfg.Replicas > 5 {
				return usagef("--replicas %d: JetStream keeps 1 to 5 replicas", cfg.Replicas)
			}
			var last time.Time
			cfg.Progress = func(p backup.RestoreProgress) {
				if time.Since(last) < time.Second && p.Files < p.FilesTotal {
					return
				}
				last = time.Now()
				fmt.Fprintf(e.stderr, "restore: %d/%d files, %s of %s\n", p.Files, p.FilesTotal, bytesize.Human(p.Bytes), bytesize.Human(p.BytesTotal))
			}
			rep, err := backup.Restore(cmd.Context(), cfg)
			for _, w := range rep.Warnings {
				fmt.Fprintf(e.stderr, "WARNING: %s\n", w)
			}
			if err != nil {
				if rep.Restored > 0 {
					fmt.Fprintf(e.stderr, "restore stopped after %d files (%s) in %s; run it again to go on\n", rep.Restored, bytesize.Human(rep.Bytes), rep.Elapsed.Round(time.Millisecond))
				}
				return err
			}
			made := ""
			if rep.Created {
				made = ", created"
			}
			fmt.Fprintf(e.stdout, "restored %d files (%s) in %s into bucket %s (%d replicas%s)\n", rep.Restored, bytesize.Human(rep.Bytes),
				rep.Elapsed.Round(time.Millisecond), cfg.Bucket, rep.Replicas, made)
			if rep.Present > 0 {
				fmt.Fprintf(e.stdout, "already there: %d files\n", rep.Present)
			}
			for _, s := range rep.Skipped {
				fmt.Fprintf(e.stdout, "left out: %s\n", s)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "from", "", "the replica dir to restore")
	f.StringVar(&cfg.Bucket, "bucket", subjects.FilesBucket, "object store bucket to fill")
	f.IntVar(&cfg.Replicas, "replicas", 0, "replicas of the bucket, as the file servers' --replicas (default: 1 on a single broker, on a cluster one per broker up to 3)")
	f.StringVar(&cfg.Owner, "owner", "admin", "owner of files the replica does not record an owner for")
	f.DurationVar(&cfg.CallTimeout, "call-timeout", 10*time.Second, "deadline of each call to the brokers")
	f.DurationVar(&cfg.StepTimeout, "step-timeout", 2*time.Minute, "how long one step retries calls that time out or find JetStream unavailable")
	return cmd
}
