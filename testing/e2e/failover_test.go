package e2e

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

const bigFile = 64 << 20

// TestUploadSurvivesKillOfItsServer kills (SIGKILL) the file server holding
// a running 64 MiB upload; the upload goes on with the other server from
// the last stored chunk and completes, byte-identical.
func TestUploadSurvivesKillOfItsServer(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	c := sys.Login(t, "admin")
	data := ftfstest.RandomBytes(bigFile)

	killed, last, err := putAndHitHolder(t, sys, c, "big.bin", data, sys.Kill)
	if err != nil {
		t.Fatalf("put with %s killed: %v", killed, err)
	}
	if last.Resent >= bigFile/4 {
		t.Fatalf("re-sent %d bytes of %d: not resumed", last.Resent, bigFile)
	}
	t.Logf("killed %s mid-upload; failovers %d, re-sent %d bytes", killed, last.Failovers, last.Resent)
	ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, c, "big.bin"))

	sys.Restart(t, killed)
	ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, c, "big.bin"))
}

// TestDownloadSurvivesKillOfAServer kills a file server during a running
// 64 MiB download; the download completes with the other server.
func TestDownloadSurvivesKillOfAServer(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	c := sys.Login(t, "admin")
	data := sys.PutRandom(t, c, "big.bin", bigFile)

	for _, victim := range []string{"primary", "backup"} {
		var last client.Progress
		var got bytes.Buffer
		killDone := make(chan struct{})
		// Kill from the side, so that a batch request may be in flight to
		// the victim when it dies; the write waits for the kill.
		w := &ftfstest.Midway{W: &got, At: bigFile / 8, Fault: func() {
			go func() { defer close(killDone); sys.Kill(t, victim) }()
			<-killDone
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := c.Get(ctx, "big.bin", w, client.OnProgress(func(p client.Progress) { last = p }))
		cancel()
		if err != nil {
			t.Fatalf("get with %s killed: %v", victim, err)
		}
		ftfstest.SameBytes(t, data, got.Bytes())
		if !w.Hit() {
			t.Fatalf("%s was not killed mid-download", victim)
		}
		if last.Resent >= bigFile/4 {
			t.Fatalf("received %d bytes twice: not resumed", last.Resent)
		}
		t.Logf("killed %s: failovers %d, re-received %d bytes", victim, last.Failovers, last.Resent)
		sys.Restart(t, victim)
	}
}

// TestTransfersRideOverAFrozenServer freezes (SIGSTOP) the server holding an
// upload, and a server during a download: its socket stays open, so requests
// still reach it until the broker drops it. Both transfers complete, and
// once thawed the stale holder must not disturb the stored file.
func TestTransfersRideOverAFrozenServer(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	c := sys.Login(t, "admin")
	data := ftfstest.RandomBytes(bigFile)

	frozen, last, err := putAndHitHolder(t, sys, c, "frozen.bin", data, sys.Freeze)
	if err != nil {
		t.Fatalf("put with %s frozen: %v", frozen, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Logf("froze %s mid-upload; failovers %d, re-sent %d bytes", frozen, last.Failovers, last.Resent)
	sys.Thaw(t, frozen)
	sys.WaitServers(t, "primary", "backup")
	time.Sleep(2 * time.Second) // let the thawed holder try its stale chunks
	ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, c, "frozen.bin"))
	got, err := sys.ObjectStore(t).GetBytes(ctx, "frozen.bin")
	if err != nil {
		t.Fatal(err)
	}
	ftfstest.SameBytes(t, data, got)

	// A download while one server is frozen.
	var buf bytes.Buffer
	w := &ftfstest.Midway{W: &buf, At: bigFile / 8, Fault: func() { sys.Freeze(t, "primary") }}
	_, err = c.Get(ctx, "frozen.bin", w)
	sys.Thaw(t, "primary")
	if err != nil {
		t.Fatalf("get with primary frozen: %v", err)
	}
	ftfstest.SameBytes(t, data, buf.Bytes())
	if !w.Hit() {
		t.Fatal("primary was not frozen mid-download")
	}
}

// putAndHitHolder uploads data and, once a part of it is stored, applies
// fault (kill, freeze) to the file server holding the upload. It fails the
// test unless the fault hit mid-upload and the upload moved.
func putAndHitHolder(t *testing.T, sys *ftfstest.System, c *client.Client, name string, data []byte, fault func(testing.TB, string)) (role string, last client.Progress, err error) {
	t.Helper()
	var once sync.Once
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = c.Put(ctx, name, bytes.NewReader(data), int64(len(data)), client.OnProgress(func(p client.Progress) {
		last = p
		if p.Done > int64(len(data))/8 && p.Done < p.Total {
			once.Do(func() {
				role = sys.InstanceRole(t, p.Instance)
				fault(t, role)
			})
		}
	}))
	if err == nil && (role == "" || last.Failovers == 0) {
		t.Fatalf("the fault did not hit mid-upload (server %q, progress %+v)", role, last)
	}
	return role, last, err
}
