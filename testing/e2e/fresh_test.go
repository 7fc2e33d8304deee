package e2e

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestFreshCommandsRightAfterABrokerKill starts new CLI processes the
// moment a broker dies, each time a broker a file server is connected
// through: every command must work, and take no longer than the same
// question asked at the same moment by a client connected all along, but
// for the connection's own cost (issue 15, item 2).
func TestFreshCommandsRightAfterABrokerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts brokers for a minute; skipped with -short")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	cli := sys.AdminCLI(t)
	want := ftfstest.RandomBytes(100 << 10)
	if _, stderr, code := cli.Run(t, strings.NewReader(string(want)), nil, "put", "-", "fresh/a.bin"); code != 0 {
		t.Fatal(stderr)
	}
	longLived := sys.Login(t, "admin")

	// The two file servers start on different brokers and, when one's
	// broker dies, stay apart (store.Preferred): one of them answers the
	// auth callout throughout.
	apart := func(when string) {
		t.Helper()
		var p, b []string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			p, b = sys.BrokersHolding(t, subjects.ConnNamePrimary), sys.BrokersHolding(t, subjects.ConnNameBackup)
			if len(p) == 1 && len(b) == 1 && p[0] != b[0] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the primary is connected through %v, the backup through %v; want one broker each, not the same", when, p, b)
			}
		}
	}

	for round := range 3 {
		sys.WaitHealthy(t)
		sys.WaitServers(t, "primary", "backup")
		if round == 0 {
			apart("at start")
		}
		// The broker a file server is connected through (one of them,
		// in turn): its clients and its file server move at once.
		var victim string
		ftfstest.Eventually(t, 30*time.Second, "a file server's broker", func() bool {
			held := append(sys.BrokersHolding(t, subjects.ConnNamePrimary), sys.BrokersHolding(t, subjects.ConnNameBackup)...)
			slices.Sort(held)
			held = slices.Compact(held)
			if len(held) == 0 {
				return false
			}
			victim = held[round%len(held)]
			return true
		})
		sys.Kill(t, victim)
		var wg sync.WaitGroup
		var steady time.Duration
		wg.Go(func() {
			start := time.Now()
			if _, err := longLived.List(ctxFor(t, time.Minute), "fresh/"); err != nil {
				t.Errorf("round %d, %s killed: the long-lived client's list: %v", round, victim, err)
			}
			steady = time.Since(start)
		})
		commands := [][]string{{"ls", "fresh/"}, {"stat", "fresh/a.bin"}, {"get", "fresh/a.bin", "-"}}
		took := make([]time.Duration, len(commands))
		for i, args := range commands {
			wg.Go(func() {
				start := time.Now()
				out, stderr, code := cli.Run(t, nil, nil, args...)
				took[i] = time.Since(start)
				switch {
				case code != 0:
					t.Errorf("round %d, %s killed: ftfs %s: exit %d after %v: %s", round, victim, strings.Join(args, " "), code, took[i].Round(time.Millisecond), stderr)
				case args[0] == "get" && out != string(want):
					t.Errorf("round %d: ftfs get: content differs", round)
				}
			})
		}
		wg.Wait()
		if round == 0 {
			apart("after " + victim + " was killed")
		}
		t.Logf("figures: round %d, %s killed: a long-lived client's list took %v; fresh ls, stat, get %v",
			round, victim, steady.Round(time.Millisecond), took)
		// A fresh process pays for its start and its connection (tens of
		// milliseconds), and one whose connection came while no file
		// server was subscribed to the auth callout (theirs were on the
		// dead broker, and reconnect within a few hundred milliseconds)
		// waits for the broker's first ping, brokerPing, and connects
		// again (client.connect). A connection that timed out and was
		// tried again costs more: connectTimeout, 6 s. The rest of the
		// margin is for a noisy machine.
		const brokerPing = 2 * time.Second // broker.Config.PingInterval's default
		for i, d := range took {
			if d > steady+brokerPing+2*time.Second {
				t.Errorf("round %d, %s killed: fresh ftfs %s took %v, the long-lived client %v", round, victim, commands[i][0], d.Round(time.Millisecond), steady.Round(time.Millisecond))
			}
		}
		sys.Restart(t, victim)
	}
}

// TestNoFileServerSaysSo: with the broker up and no file server, a command
// says that no file server runs, not that the connection timed out or
// that the password is wrong (issue 15, item 7).
func TestNoFileServerSaysSo(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary"))
	cli := sys.AdminCLI(t)
	sys.Kill(t, "primary")
	_, stderr, code := cli.Run(t, nil, nil, "ls")
	if code == 0 || !strings.Contains(stderr, "no file server answered") || strings.Contains(stderr, "ftfs login") {
		t.Fatalf("ftfs ls with no file server: exit %d, %q", code, stderr)
	}
	sys.Restart(t, "primary")
	if _, stderr, code := cli.Run(t, nil, nil, "ls"); code != 0 {
		t.Fatalf("ftfs ls with the file server back: exit %d, %q", code, stderr)
	}
}
