package cluster

import (
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestFaultMatrix runs three brokers (buckets at three replicas) and both
// file servers, and injects one fault per row while four clients upload,
// download, list and delete files of mixed sizes. In every row no client
// operation may fail, nothing acknowledged may be lost, and no phantom file
// may be listed. The rows share the cluster and run one after the other;
// each has its own clients and files. Each row logs its failover figures.
func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("three minutes long; skipped with -short")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	// One put in eight is larger than 64 MiB.
	sizes := []int{100 << 10, 100 << 10, 1 << 20, 1 << 20, 3<<20 + 5, 3<<20 + 5, 5 << 20, 65<<20 + 3}

	// A row: fault, then (under load still) after, then checks once the
	// workload has stopped.
	row := func(name string, fault func(t *testing.T) time.Time, after func(t *testing.T), checks ...func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			w := sys.StartWorkload(t, 4, sizes...)
			w.WaitOps(t, 12)
			at := fault(t)
			w.WaitOps(t, 24)
			if after != nil {
				after(t)
			}
			w.WaitOps(t, 8)
			w.Verify(t)
			t.Logf("figures: %s", w.FiguresSince(at))
			for _, check := range checks {
				check(t)
			}
		})
	}
	kill := func(name string) func(t *testing.T) time.Time {
		return func(t *testing.T) time.Time {
			at := time.Now()
			sys.Kill(t, name)
			return at
		}
	}
	restart := func(name string) func(t *testing.T) { return func(t *testing.T) { sys.Restart(t, name) } }

	row("1 kill primary", kill("primary"), restart("primary"))
	row("2 kill backup", kill("backup"), restart("backup"), func(t *testing.T) { sys.ReplicaMatches(t) })
	row("3 freeze primary for 15s", func(t *testing.T) time.Time {
		at := time.Now()
		sys.Freeze(t, "primary")
		time.Sleep(15 * time.Second)
		sys.Thaw(t, "primary")
		return at
	}, nil)
	// killLeader kills the broker a finder names, and restarts it after.
	var killedBroker string
	killLeader := func(what string, find func(t *testing.T) string) (func(t *testing.T) time.Time, func(t *testing.T)) {
		return func(t *testing.T) time.Time {
				killedBroker = find(t)
				t.Logf("%s: %s", what, killedBroker)
				at := time.Now()
				sys.Kill(t, killedBroker)
				return at
			}, func(t *testing.T) {
				sys.Restart(t, killedBroker)
			}
	}
	fault, after := killLeader("files stream leader", func(t *testing.T) string {
		return sys.StreamLeader(t, subjects.ObjectStream(subjects.FilesBucket))
	})
	row("4a kill the files stream leader", fault, after)
	fault, after = killLeader("meta leader", func(t *testing.T) string { return sys.MetaLeader(t) })
	row("4b kill the meta leader", fault, after)
	row("5 kill both file servers, then start one", func(t *testing.T) time.Time {
		at := time.Now()
		sys.Kill(t, "primary")
		sys.Kill(t, "backup")
		time.Sleep(2 * time.Second)
		sys.Restart(t, "primary")
		return at
	}, restart("backup"))
}
