package fileserver

import (
	"log/slog"
	"os"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// Roles a file server announces in its micro metadata.
const (
	RolePrimary = "primary"
	RoleBackup  = "backup"
)

// AdminUser is the account created from FTFS_ADMIN_PASSWORD on first start.
const AdminUser = "admin"

// Defaults of the per-user limits for the command line (a zero Config has
// none). A file must fit on every broker's disk, which 64 GiB leaves room
// for; 32 transfers at once and 64 unfinished uploads are more than a
// person or a benchmark runs as one user, and stop a runaway script.
const (
	DefaultMaxFileSize    = 64 << 30
	DefaultMaxTransfers   = 32
	DefaultMaxOpenUploads = 64
)

// TransferIdle is how long an upload that stores no chunk, or a download
// that asks for no batch, still counts as a transfer (Config.MaxTransfers).
const TransferIdle = 30 * time.Second

// Config configures one file server instance.
type Config struct {
	// Servers are the broker URLs; the connection moves between them.
	Servers []string
	// ServicePassword authenticates this server to the broker as
	// subjects.ServiceUser and derives the auth callout signing key.
	ServicePassword string
	// TLSCA, when set, is the CA file that signed the brokers'
	// certificates: the connection uses TLS and trusts it. A tls:// URL in
	// Servers uses TLS with the system's roots.
	TLSCA string
	// GatewayPassword, when set, is the secret of the share link gateway
	// (subjects.GatewayUser); without it no gateway may connect.
	GatewayPassword string
	// AdminPassword, when set and no user exists yet, creates AdminUser.
	AdminPassword string
	// Role is RolePrimary or RoleBackup.
	Role string
	// Replicas is the JetStream replica count of the buckets it creates
	// (1 on a single broker, 3 on a cluster).
	Replicas int
	// Bucket is the object store bucket for file content.
	Bucket string
	// SessionTTL is how long a login lasts (default subjects.SessionTTL).
	SessionTTL time.Duration
	// UploadIdle is how long an unfinished upload may sit idle before it is
	// aborted and its chunks purged (default subjects.UploadIdle).
	UploadIdle time.Duration

	// Per-user limits (usage.go); 0 means unlimited. Every server of a
	// system must be given the same limits: each enforces its own.
	//
	// MaxFileSize is the largest file, in bytes. An upload announcing more
	// is refused when it opens; one that grows past it (size unknown, or
	// announced wrongly) is refused at the chunk that crosses it and purged.
	// Error: subjects.CodeTooLarge.
	MaxFileSize int64
	// UserQuota bounds the bytes a user stores: the sizes of the files they
	// own plus the announced (or, when unknown, so far received) sizes of
	// their unfinished uploads. Overwriting one's own file counts only the
	// difference. Checked when an upload opens, as chunks of an upload pass
	// its announced size, and at commit. Error: subjects.CodeQuota.
	UserQuota int64
	// MaxOpenUploads bounds a user's unfinished uploads on all servers
	// together: opened, and not yet committed, aborted or expired
	// (UploadIdle). Checked when an upload opens. Error: subjects.CodeQuota.
	MaxOpenUploads int
	// MaxTransfers bounds the transfers a user runs at once on all servers
	// together. An upload counts from its open until it is committed or
	// aborted, or has stored no chunk for TransferIdle; a download (the
	// batches asked for from one reply subject prefix, as client.Get does)
	// counts from its first batch until it asks for the batch that reaches
	// the end of the file, or has asked for none for TransferIdle. Checked
	// when an upload opens and when a download asks for its first batch; a
	// running transfer is never cut off. Error: subjects.CodeQuota.
	MaxTransfers int

	// Login throttling (throttle.go), shared by every file server: after
	// a few failed logins for a user name each further attempt waits
	// LoginBackoff, doubling with each failure up to a minute, and
	// LoginLockAfter failures lock the name for LoginLock (at most a day).
	// Zero values take the defaults: 1s, 10 failures, 15 minutes.
	LoginBackoff   time.Duration
	LoginLockAfter int
	LoginLock      time.Duration

	// IndexDir, when set, is where the server keeps a snapshot of its
	// files index (snapshot.go), written as it stops and every few minutes,
	// so that its next start reads only the changes since. Servers may
	// share it.
	IndexDir string

	// MetricsAddr, when set, is the HOST:PORT where the server serves its
	// Prometheus metrics and health checks over HTTP (metrics.go). They
	// name no user or file, but keep it on loopback or a private network.
	MetricsAddr string

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Replica, when set, reports the backup's plain-file replica in the
	// status reply.
	Replica func() subjects.ReplicaStats
	// Fallback, when set, serves reads while storage has lost its quorum,
	// and answers the subjects.Replica* subjects at all times.
	Fallback Fallback
}

// Fallback is a plain-file copy of the files bucket (the backup's replica).
type Fallback interface {
	// List returns every file, sorted by name.
	List() []subjects.FileInfo
	// Open opens a file's content with its description; a missing file is
	// a CodeNotFound error.
	Open(name string) (*os.File, subjects.FileInfo, error)
	// Lag says how far behind storage the copy is: its Pending and
	// Oldest, and as AsOf when it last heard of a change (the server
	// makes AsOf the time the answer is as of).
	Lag() subjects.ReplicaLag
}
