// Package backup is the backup file server: the same file service as
// primary, announced with role "backup", plus a plain-file replica of every
// stored file on the backup's own disk, kept in sync by watching the bucket.
package backup

import "github.com/ftfs/ftfs/fileserver"

// Config configures the backup server.
type Config struct {
	// Service configures the file service this process also runs; its Role
	// is forced to fileserver.RoleBackup.
	Service fileserver.Config
	// ReplicaDir holds the plain-file copy of the bucket (default
	// ./data/backup).
	ReplicaDir string
}
