package e2e

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestQuorumLoss takes two of the three brokers down. Writes must then
// fail fast with ErrReadOnly; downloads and listings of the files stored
// before must go on, served by the backup from its replica dir; and once
// one broker is back, writes must resume without restarting anything.
func TestQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long; skipped with -short")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	w := sys.StartWorkload(t, 4, 100<<10, 1<<20, 3<<20+5)
	w.WaitOps(t, 24)
	w.Verify(t)
	stored := w.Acked()
	replicaMatches(t, sys)

	sys.AddUser(t, "reader")
	reader := sys.Login(t, "reader")
	admin := sys.Login(t, "admin")
	cli := sys.CLI(t)
	if _, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=" + sys.AdminPassword}, "login", "admin"); code != 0 {
		t.Fatal(stderr)
	}

	down := []string{sys.MetaLeader(t)}
	for _, b := range []string{"broker1", "broker2", "broker3"} {
		if b != down[0] && len(down) < 2 {
			down = append(down, b)
		}
	}
	fault := time.Now()
	for _, b := range down {
		sys.Kill(t, b)
	}
	t.Logf("killed %v", down)

	ftfstest.Eventually(t, time.Minute, "a write refused as read-only", func() bool {
		_, err := reader.Put(ctxFor(t, 15*time.Second), "ro/probe", strings.NewReader("x"), 1)
		return errors.Is(err, client.ErrReadOnly)
	})
	t.Logf("figures: read-only %v after the fault", time.Since(fault).Round(time.Millisecond))

	t.Run("every write fails fast with a clear error", func(t *testing.T) {
		some := slices.Sorted(maps.Keys(stored))[0]
		writes := map[string]func(ctx context.Context) error{
			"put": func(ctx context.Context) error {
				_, err := reader.Put(ctx, "ro/new", strings.NewReader("new"), 3)
				return err
			},
			"delete": func(ctx context.Context) error { return admin.Delete(ctx, some) },
			"rename": func(ctx context.Context) error {
				_, err := admin.Rename(ctx, some, "ro/renamed", false)
				return err
			},
		}
		for what, write := range writes {
			start := time.Now()
			err := write(ctxFor(t, time.Minute))
			took := time.Since(start)
			if !errors.Is(err, client.ErrReadOnly) || !strings.Contains(err.Error(), "read-only") {
				t.Errorf("%s: %v, want ErrReadOnly", what, err)
			}
			// A write must not wait out its deadline: "fast" is far
			// below the minute it was given.
			if took > 15*time.Second {
				t.Errorf("%s took %v to fail", what, took)
			}
		}
		_, stderr, code := cli.Run(t, strings.NewReader("data"), nil, "put", "-", "ro/cli")
		if code == 0 || !strings.Contains(stderr, "read-only") {
			t.Errorf("ftfs put: exit %d, %q", code, stderr)
		}
	})

	t.Run("downloads and listings go on", func(t *testing.T) {
		var slowest time.Duration
		for name, digest := range stored {
			start := time.Now()
			h := ftfstest.NewDigester()
			if _, err := reader.Get(ctxFor(t, time.Minute), name, h); err != nil {
				t.Fatalf("get %s: %v", name, err)
			}
			slowest = max(slowest, time.Since(start))
			if h.Digest() != digest {
				t.Fatalf("get %s: content differs", name)
			}
		}
		files, err := reader.List(ctxFor(t, time.Minute), "load/")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range files {
			names = append(names, f.Name)
			if f.Digest != stored[f.Name] {
				t.Errorf("listed %s with digest %s, want %s", f.Name, f.Digest, stored[f.Name])
			}
		}
		if len(names) != len(stored) {
			t.Errorf("listed %d files, want %d", len(names), len(stored))
		}
		out, stderr, code := cli.Run(t, nil, nil, "ls", "load/")
		if code != 0 || strings.Count(out, "load/") != len(stored) {
			t.Errorf("ftfs ls: exit %d, %d files listed, want %d: %s", code, strings.Count(out, "load/"), len(stored), stderr)
		}
		t.Logf("figures: %d files read from the replica, slowest %v", len(stored), slowest.Round(time.Millisecond))
	})

	back := time.Now()
	sys.Restart(t, down[0])
	var after []byte
	ftfstest.Eventually(t, 2*time.Minute, "a write accepted again", func() bool {
		after = ftfstest.RandomBytes(1 << 20)
		_, err := reader.Put(ctxFor(t, 20*time.Second), "ro/after", strings.NewReader(string(after)), int64(len(after)))
		return err == nil
	})
	t.Logf("figures: writable %v after a broker came back", time.Since(back).Round(time.Millisecond))
	sys.Restart(t, down[1])

	ftfstest.SameBytes(t, after, ftfstest.GetBytes(t, reader, "ro/after"))
	for _, name := range []string{"ro/probe", "ro/new", "ro/renamed"} {
		if _, err := reader.Stat(ctxFor(t, time.Minute), name); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("%s, refused while read-only: stat says %v", name, err)
		}
	}
	for name, digest := range stored {
		h := ftfstest.NewDigester()
		if _, err := reader.Get(ctxFor(t, time.Minute), name, h); err != nil || h.Digest() != digest {
			t.Errorf("after recovery, %s: %v", name, err)
		}
	}
}
