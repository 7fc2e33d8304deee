package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestStatusShowsBrokersAndBuckets checks `ftfs status` on a cluster: every
// broker answers for itself, one leads the meta group, every bucket's
// stream has a leader; and a killed broker is shown unreachable.
func TestStatusShowsBrokersAndBuckets(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	cli := sys.AdminCLI(t)
	status := func() (client.Status, bool) {
		out, stderr, code := cli.Run(t, nil, nil, "status", "--json")
		var st client.Status
		if code != 0 {
			t.Logf("ftfs status: exit %d: %s", code, stderr)
			return st, false
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("ftfs status --json: %v\n%s", err, out)
		}
		return st, true
	}
	buckets := append([]string{subjects.FilesBucket}, subjects.KVBuckets()...)
	bucketsLed := func(st client.Status, not string) bool {
		if len(st.Buckets) != len(buckets) {
			return false
		}
		for _, b := range st.Buckets {
			if !slices.Contains(buckets, b.Bucket) || b.Error != "" || b.Leader == "" || b.Leader == not {
				return false
			}
		}
		return true
	}

	var st client.Status
	var leader string
	ftfstest.Eventually(t, 60*time.Second, "three brokers, one meta leader, five led buckets", func() bool {
		var ok bool
		if st, ok = status(); !ok || len(st.Brokers) != 3 || len(st.UnreachableBrokers) != 0 || st.ReadOnly {
			return false
		}
		leader = st.Brokers[0].MetaLeader
		for _, b := range st.Brokers {
			if b.MetaLeader == "" || b.MetaLeader != leader {
				return false
			}
		}
		return bucketsLed(st, "")
	})
	for i, b := range st.Brokers {
		if want := []string{"broker1", "broker2", "broker3"}[i]; b.Name != want || b.URL != sys.Process(want).URL() {
			t.Fatalf("broker %d is %s at %s, want %s at %s", i, b.Name, b.URL, want, sys.Process(want).URL())
		}
	}

	victim := "broker1"
	if leader == victim {
		victim = "broker2"
	}
	// A user who logged in through the victim alone must go on working
	// through the brokers the cluster announced at login.
	through := sys.CLI(t)
	if _, stderr, code := through.Run(t, nil, []string{"NATS_URL=" + sys.Process(victim).URL(), "FTFS_PASSWORD=" + sys.AdminPassword}, "login", "admin"); code != 0 {
		t.Fatal(stderr)
	}
	sys.Kill(t, victim)
	if _, stderr, code := through.Run(t, nil, []string{"NATS_URL="}, "ls"); code != 0 {
		t.Fatalf("ftfs ls after the only broker given at login died: exit %d: %s", code, stderr)
	}
	ftfstest.Eventually(t, 60*time.Second, victim+" unreachable and every bucket led by another", func() bool {
		var ok bool
		if st, ok = status(); !ok || len(st.Brokers) != 2 || st.ReadOnly {
			return false
		}
		for _, b := range st.Brokers {
			if b.Name == victim {
				return false
			}
		}
		return slices.Equal(st.UnreachableBrokers, []string{victim}) && bucketsLed(st, victim)
	})

	out, stderr, code := cli.Run(t, nil, nil, "status")
	if code != 0 {
		t.Fatalf("ftfs status: exit %d: %s", code, stderr)
	}
	t.Logf("ftfs status:\n%s", out)
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, victim+" ") {
			line = l
		}
	}
	if !strings.Contains(line, "unreachable") || strings.Contains(line, "current") || !strings.Contains(out, "meta leader") || strings.Contains(out, "READ-ONLY") {
		t.Fatalf("text status does not show %s unreachable beside a meta leader:\n%s", victim, out)
	}

	// Without a quorum the file servers must answer at once, read-only and
	// without bucket data, and the last broker still answers for itself.
	sys.Kill(t, leader)
	ftfstest.Eventually(t, 60*time.Second, "read-only status with one broker up", func() bool {
		var ok bool
		st, ok = status()
		return ok && st.ReadOnly && len(st.Brokers) == 1 && len(st.UnreachableBrokers) == 2 && len(st.Buckets) == 0
	})
	out, stderr, code = cli.Run(t, nil, nil, "status")
	if code != 0 {
		t.Fatalf("ftfs status: exit %d: %s", code, stderr)
	}
	t.Logf("ftfs status without a quorum:\n%s", out)
	if !strings.Contains(out, "READ-ONLY: storage quorum lost") {
		t.Fatalf("text status does not say storage is read-only:\n%s", out)
	}
}
