package cli

import (
	"fmt"
	"time"

	"github.com/ftfs/ftfs/client"
)

// replicaNotice says that an answer came from the backup's replica, not
// storage, and how far behind storage the replica was. Printed on stderr;
// --json output carries the same in each file's "replica".
func replicaNotice(l *client.ReplicaLag) string {
	asOf := l.AsOf.Local().Format(time.TimeOnly)
	if l.Pending == 0 {
		return fmt.Sprintf("ftfs: notice: storage has lost its quorum; served from the backup's replica as of %s, which had copied every change it had seen", asOf)
	}
	behind := time.Since(l.Oldest)
	changes := "changes"
	if l.Pending == 1 {
		changes = "change"
	}
	return fmt.Sprintf("ftfs: notice: storage has lost its quorum; served from the backup's replica as of %s, which is %d %s behind (the oldest %s behind, seen at %s); files not yet copied are listed as pending and cannot be read until storage is back",
		asOf, l.Pending, changes, behind.Round(100*time.Millisecond), l.Oldest.Local().Format(time.TimeOnly))
}

// noticeReplica prints the replica notice on stderr when l is set.
func (e *env) noticeReplica(l *client.ReplicaLag) {
	if l != nil {
		fmt.Fprintln(e.stderr, replicaNotice(l))
	}
}
