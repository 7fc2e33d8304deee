package e2e

import (
	"flag"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/testing/ftfstest"
)

var soakDuration = flag.Duration("soak.duration", time.Minute, "how long TestSoak injects faults")

// TestSoak kills, freezes and restarts random components (one broker at a
// time, either file server, both file servers) under load for
// -soak.duration, then checks every acknowledged file against its digest
// and every acknowledged delete. Nothing may be lost, and since at most one
// broker is ever away, no client operation may fail.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long at least; skipped with -short")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	w := sys.StartWorkload(t, 4, 100<<10, 100<<10, 1<<20, 1<<20, 3<<20+5, 5<<20, 65<<20+3)
	w.WaitOps(t, 8)

	seed := uint64(time.Now().UnixNano())
	t.Logf("soak for %v, seed %d", *soakDuration, seed)
	rng := mrand.New(mrand.NewPCG(seed, seed>>1))
	pick := func(names ...string) string { return names[rng.IntN(len(names))] }
	pause := func(lo, hi time.Duration) { time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo))+1)) }
	faults := map[string]int{}
	kinds := []struct {
		name   string
		inject func() string
	}{
		{"kill a broker", func() string {
			b := pick(sys.BrokerNames()...)
			sys.Kill(t, b)
			pause(time.Second, 8*time.Second)
			sys.Restart(t, b)
			return b
		}},
		{"freeze a broker", func() string {
			b := pick(sys.BrokerNames()...)
			sys.Freeze(t, b)
			pause(time.Second, 6*time.Second)
			sys.Thaw(t, b)
			return b
		}},
		{"kill a file server", func() string {
			s := pick("primary", "backup")
			sys.Kill(t, s)
			pause(0, 5*time.Second)
			sys.Restart(t, s)
			return s
		}},
		{"freeze a file server", func() string {
			s := pick("primary", "backup")
			sys.Freeze(t, s)
			pause(time.Second, 8*time.Second)
			sys.Thaw(t, s)
			return s
		}},
		{"kill both file servers", func() string {
			sys.Kill(t, "primary")
			sys.Kill(t, "backup")
			pause(0, 3*time.Second)
			first := pick("primary", "backup")
			sys.Restart(t, first)
			pause(0, 3*time.Second)
			sys.Restart(t, map[string]string{"primary": "backup", "backup": "primary"}[first])
			return "primary, backup"
		}},
	}
	for end := time.Now().Add(*soakDuration); time.Now().Before(end); {
		k := kinds[rng.IntN(len(kinds))]
		what := k.inject()
		faults[k.name]++
		t.Logf("fault: %s (%s)", k.name, what)
		// The next fault waits for the cluster to be whole again: two
		// brokers away at once is quorum loss, a test of its own.
		sys.WaitHealthy(t)
		sys.WaitServers(t, "primary", "backup")
		w.WaitOps(t, 4)
	}
	rep := w.Verify(t)
	var injected []string
	for _, k := range slices.Sorted(maps.Keys(faults)) {
		injected = append(injected, fmt.Sprintf("%s %d", k, faults[k]))
	}
	t.Logf("soak: %v, seed %d\n  operations %d (failed %d)\n  faults: %s\n  files verified %d, lost %d, corrupted %d, deleted files back %d\n  longest stall %v, slowest operation %v",
		*soakDuration, seed, rep.Operations, rep.Failed, strings.Join(injected, ", "),
		rep.Verified, rep.Lost, rep.Corrupted, rep.Resurrected, w.LongestStall().Round(time.Millisecond), rep.Slowest.Round(time.Millisecond))
}
