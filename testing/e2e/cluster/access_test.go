package cluster

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestAccessRulesHoldWhileReadOnly loses the quorum and checks that the
// access rules still decide: the backup's replica serves what a rule lets
// a user read and list, refuses the rest (large files' downloads too),
// and a rule cannot be changed while storage is read-only.
func TestAccessRulesHoldWhileReadOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long; skipped with -short")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	admin := sys.Login(t, "admin")
	sys.AddUser(t, "alice")
	sys.AddUser(t, "bob")
	alice, bob := sys.Login(t, "alice"), sys.Login(t, "bob")
	ctx := func() context.Context { return ftfstest.Context(t, time.Minute) }

	secretSmall := sys.PutRandom(t, alice, "home/alice/small.txt", 100)
	secretLarge := sys.PutRandom(t, alice, "home/alice/large.bin", 3<<20+5)
	shared := sys.PutRandom(t, admin, "projects/p/plan.txt", 100)
	if _, err := admin.SetAccess(ctx(), "projects/p/", "read,list: bob"); err != nil {
		t.Fatal(err)
	}
	sys.ReplicaMatches(t)

	down := []string{sys.MetaLeader(t)}
	for _, b := range []string{"broker1", "broker2", "broker3"} {
		if b != down[0] && len(down) < 2 {
			down = append(down, b)
		}
	}
	for _, b := range down {
		sys.Kill(t, b)
	}
	ftfstest.Eventually(t, time.Minute, "storage read-only", func() bool {
		_, err := bob.Put(ftfstest.Context(t, 15*time.Second), "ro/probe", strings.NewReader("x"), 1)
		return errors.Is(err, client.ErrReadOnly)
	})

	for _, name := range []string{"home/alice/small.txt", "home/alice/large.bin", "home/alice/guessed.txt"} {
		if _, err := bob.Stat(ctx(), name); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("bob stats %s from the replica: %v, want ErrForbidden", name, err)
		}
		var buf bytes.Buffer
		if _, err := bob.Get(ctx(), name, &buf); !errors.Is(err, client.ErrForbidden) || buf.Len() != 0 {
			t.Errorf("bob gets %s from the replica: %v, %d bytes; want ErrForbidden and nothing", name, err, buf.Len())
		}
	}
	listing, err := bob.ListFiles(ctx(), "")
	if err != nil || listing.Replica == nil {
		t.Fatalf("bob's listing while read-only: %v (replica %v), want one from the replica", err, listing.Replica)
	}
	var names []string
	for _, f := range listing.Files {
		names = append(names, f.Name)
	}
	if !slices.Contains(names, "projects/p/plan.txt") || slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "home/") }) {
		t.Errorf("bob lists %v from the replica, want projects/p/plan.txt and nothing of home/", names)
	}
	ftfstest.SameBytes(t, shared, ftfstest.GetBytes(t, bob, "projects/p/plan.txt"))
	ftfstest.SameBytes(t, secretSmall, ftfstest.GetBytes(t, alice, "home/alice/small.txt"))
	ftfstest.SameBytes(t, secretLarge, ftfstest.GetBytes(t, alice, "home/alice/large.bin"))
	if _, err := alice.Get(ctx(), "projects/p/plan.txt", &bytes.Buffer{}); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("alice, not in the rule of projects/p/, reads it from the replica: %v", err)
	}
	if _, err := admin.SetAccess(ctx(), "projects/p/", "read,list: *"); !errors.Is(err, client.ErrReadOnly) {
		t.Errorf("a rule set while read-only: %v, want ErrReadOnly", err)
	}
	if show, err := bob.ShowAccess(ctx(), "projects/p/plan.txt"); err != nil || show.Rule.Prefix != "projects/p/" || strings.Join(show.Rights, ",") != "read,list" {
		t.Errorf("bob's access show while read-only: %+v, %v", show, err)
	}
}
