package primary

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
}
