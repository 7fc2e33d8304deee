package e2e

import (
	"testing"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestClusterSurvivesBrokerKill runs three brokers (buckets at three
// replicas) under a workload of four clients and kills the broker leading
// the files stream; no client operation may fail, nothing acknowledged may
// be lost, and the broker rejoins from its data dir.
func TestClusterSurvivesBrokerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers and a workload")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	w := sys.StartWorkload(t, 4, 100<<10, 1<<20, 3<<20+5)
	w.WaitOps(t, 20)

	leader := sys.StreamLeader(t, subjects.ObjectStream(subjects.FilesBucket))
	sys.Kill(t, leader)
	w.WaitOps(t, 40)
	sys.Restart(t, leader)
	w.WaitOps(t, 20)
	w.Verify(t)
}
