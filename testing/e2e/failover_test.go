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

	var once sync.Once
	var killed string
	var last client.Progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.Put(ctx, "big.bin", bytes.NewReader(data), int64(len(data)), client.OnProgress(func(p client.Progress) {
		last = p
		if p.Done > bigFile/8 && p.Done < p.Total {
			once.Do(func() {
				killed = sys.InstanceRole(t, p.Instance)
				sys.Kill(t, killed)
			})
		}
	}))
	if err != nil {
		t.Fatalf("put with %s killed: %v", killed, err)
	}
	if killed == "" {
		t.Fatal("the upload finished before a server could be killed")
	}
	if last.Failovers == 0 {
		t.Fatalf("no failover recorded: %+v", last)
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
		var once sync.Once
		var killedOne bool
		killDone := make(chan struct{})
		var last client.Progress
		var got bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := c.Get(ctx, "big.bin", &got, client.OnProgress(func(p client.Progress) {
			last = p
			if p.Done > bigFile/8 && p.Done < p.Total {
				// Kill from the side, so that a batch request may be in
				// flight to the victim when it dies.
				once.Do(func() {
					killedOne = true
					go func() { defer close(killDone); sys.Kill(t, victim) }()
				})
			}
		}))
		cancel()
		if killedOne {
			<-killDone
		}
		if err != nil {
			t.Fatalf("get with %s killed: %v", victim, err)
		}
		ftfstest.SameBytes(t, data, got.Bytes())
		if !killedOne {
			t.Fatalf("the download finished before %s could be killed", victim)
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

	var once sync.Once
	var frozen string
	var last client.Progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.Put(ctx, "frozen.bin", bytes.NewReader(data), int64(len(data)), client.OnProgress(func(p client.Progress) {
		last = p
		if p.Done > bigFile/8 && p.Done < p.Total {
			once.Do(func() {
				frozen = sys.InstanceRole(t, p.Instance)
				sys.Freeze(t, frozen)
			})
		}
	}))
	if err != nil {
		t.Fatalf("put with %s frozen: %v", frozen, err)
	}
	if frozen == "" || last.Failovers == 0 {
		t.Fatalf("no freeze or no failover: %q %+v", frozen, last)
	}
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
	once = sync.Once{}
	var buf bytes.Buffer
	_, err = c.Get(ctx, "frozen.bin", &buf, client.OnProgress(func(p client.Progress) {
		if p.Done > bigFile/8 && p.Done < p.Total {
			once.Do(func() { sys.Freeze(t, "primary") })
		}
	}))
	sys.Thaw(t, "primary")
	if err != nil {
		t.Fatalf("get with primary frozen: %v", err)
	}
	ftfstest.SameBytes(t, data, buf.Bytes())
}
