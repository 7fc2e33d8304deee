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
		if p.Done > bigFile/3 {
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
	t.Logf("killed %s at %d bytes; failovers %d, re-sent %d bytes", killed, bigFile/3, last.Failovers, last.Resent)
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
		var last client.Progress
		var got bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := c.Get(ctx, "big.bin", &got, client.OnProgress(func(p client.Progress) {
			last = p
			if p.Done > bigFile/3 {
				once.Do(func() { sys.Kill(t, victim) })
			}
		}))
		cancel()
		if err != nil {
			t.Fatalf("get with %s killed: %v", victim, err)
		}
		ftfstest.SameBytes(t, data, got.Bytes())
		if last.Resent >= bigFile/4 {
			t.Fatalf("received %d bytes twice: not resumed", last.Resent)
		}
		t.Logf("killed %s: failovers %d, re-received %d bytes", victim, last.Failovers, last.Resent)
		sys.Restart(t, victim)
	}
}
