package e2e

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

const bigFile = 64 << 20

// TestUploadSurvivesKillOfItsServer kills (SIGKILL) the file server holding
// a running 64 MiB relayed upload; the upload goes on with the other server
// from the last stored chunk and completes, byte-identical.
func TestUploadSurvivesKillOfItsServer(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	c := sys.Login(t, "admin", client.WithRelayedUploads())
	data := ftfstest.RandomBytes(bigFile)

	killed := putKillingHolder(t, sys, c, data, true)

	sys.Restart(t, killed)
	ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, c, "big.bin"))
}

// TestDirectUploadSurvivesKillOfItsServer kills (SIGKILL) the file server
// that opened a running 64 MiB direct upload: the client goes on publishing
// its chunks into storage without it, the commit reaches the other server,
// and the file is byte-identical, through ftfs and the plain object store.
func TestDirectUploadSurvivesKillOfItsServer(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	c := sys.Login(t, "admin")
	data := ftfstest.RandomBytes(bigFile)

	killed := putKillingHolder(t, sys, c, data, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := sys.ObjectStore(t).GetBytes(ctx, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	ftfstest.SameBytes(t, data, got)

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
	c := sys.Login(t, "admin", client.WithRelayedUploads())
	data := ftfstest.RandomBytes(bigFile)

	frozen, last, err := putAndHitHolder(t, sys, c, "frozen.bin", data, sys.Freeze, true)
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

// putKillingHolder puts data as big.bin, SIGKILLing the file server that
// holds the upload (or opened it, moves false) part of the way in, and
// checks that the put succeeds without re-sending a quarter of the file and
// reads back byte-identical. It returns the server killed.
func putKillingHolder(t *testing.T, sys *ftfstest.System, c *client.Client, data []byte, moves bool) string {
	t.Helper()
	killed, last, err := putAndHitHolder(t, sys, c, "big.bin", data, sys.Kill, moves)
	if err != nil {
		t.Fatalf("put with %s killed: %v", killed, err)
	}
	if last.Resent >= bigFile/4 {
		t.Fatalf("re-sent %d bytes of %d: not resumed", last.Resent, bigFile)
	}
	t.Logf("killed %s mid-upload; failovers %d, re-sent %d bytes", killed, last.Failovers, last.Resent)
	ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, c, "big.bin"))
	return killed
}

// putAndHitHolder uploads data and, once a part of it is stored, applies
// fault (kill, freeze) to the file server holding the upload (a direct
// upload's: the one that opened it). It fails the test unless the fault hit
// mid-upload and, when moves is set, the upload moved to the other server.
func putAndHitHolder(t *testing.T, sys *ftfstest.System, c *client.Client, name string, data []byte, fault func(testing.TB, string), moves bool) (role string, last client.Progress, err error) {
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
	if err == nil && (role == "" || moves && last.Failovers == 0) {
		t.Fatalf("the fault did not hit mid-upload (server %q, progress %+v)", role, last)
	}
	return role, last, err
}

// TestDirectUploadSurvivesKillOfItsBroker kills (SIGKILL) the broker a
// client's connections use while a 64 MiB direct upload publishes its
// chunks into storage (three brokers, files at three replicas): the upload
// connection moves to another broker, the upload resumes from what storage
// holds in order, and the file is byte-identical.
func TestDirectUploadSurvivesKillOfItsBroker(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	sys.Login(t, "admin") // waits for the servers
	victim := sys.BrokerNames()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Given only the victim's URL, both connections start there; they
	// learn the others from it.
	var opts []client.Option
	if sys.TLSCA != "" {
		opts = append(opts, client.WithTLS(sys.TLSCA))
	}
	c, err := client.Dial(ctx, []string{sys.Process(victim).URL()}, client.Credentials{User: "admin", Password: sys.AdminPassword}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	data := ftfstest.RandomBytes(bigFile)
	var once sync.Once
	var last client.Progress
	_, err = c.Put(ctx, "big.bin", bytes.NewReader(data), int64(len(data)), client.OnProgress(func(p client.Progress) {
		last = p
		if p.Done > int64(len(data))/8 && p.Done < p.Total {
			once.Do(func() { sys.Kill(t, victim) })
		}
	}))
	if err != nil {
		t.Fatalf("put with %s killed: %v", victim, err)
	}
	if last.Failovers == 0 || last.Resent >= bigFile/4 {
		t.Fatalf("progress %+v: want a resume re-sending well under the file", last)
	}
	t.Logf("killed %s mid-upload; resumes %d, re-sent %d bytes", victim, last.Failovers, last.Resent)
	ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, c, "big.bin"))
	// With the broker still down, nats.go's object store reader once hung
	// for the rest of the test in CI (its consumer placed on the dead
	// broker, presumably): the plain read comes after the restart.
	sys.Restart(t, victim)
	sys.WaitHealthy(t)
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A plain read may also be served by the restarted broker's replica
	// while it catches up (CI's TLS run once read a digest mismatch): what
	// counts is that the stream leader holds exactly the file's chunks;
	// then the read is tried again.
	obs := sys.ObjectStore(t)
	var info *jetstream.ObjectInfo
	ftfstest.Eventually(t, 30*time.Second, "big.bin's object info", func() bool {
		info, err = obs.GetInfo(ctx, "big.bin")
		return err == nil
	})
	js, err := jetstream.New(sys.ServiceConn(t))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+subjects.FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	subj := subjects.ObjectChunks(subjects.FilesBucket, info.NUID)
	si, err := stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	if held := si.State.Subjects[subj]; held != uint64(info.Chunks) {
		t.Fatalf("the stream holds %d chunks of big.bin, its meta says %d", held, info.Chunks)
	}
	var got []byte
	ftfstest.Eventually(t, 30*time.Second, "a plain object store read of big.bin", func() bool {
		got, err = obs.GetBytes(ctx, "big.bin")
		if err != nil {
			t.Logf("plain read: %v", err)
		}
		return err == nil
	})
	ftfstest.SameBytes(t, data, got)
}
