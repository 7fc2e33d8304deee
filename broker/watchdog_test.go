package broker

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// TestFrozenFileServerIsDisconnected checks the watchdog: a file server
// that stops answering (a connection nobody reads, as a SIGSTOPped
// process's) is disconnected within seconds, while one that answers keeps
// its connection. Pings are set to a minute, so only the watchdog can
// drop anything here.
func TestFrozenFileServerIsDisconnected(t *testing.T) {
	b := start(t, Config{PingInterval: time.Minute, MaxPingsOut: 2})

	var dropped atomic.Int32
	live, err := nats.Connect(b.ClientURL(), nats.UserInfo(subjects.FrontUser, pw), nats.Name(subjects.ConnNameBackup), nats.Timeout(10*time.Second),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { dropped.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := live.Subscribe(subjects.DiscoveryPing+".LIVE", func(m *nats.Msg) { _ = m.Respond([]byte("{}")) }); err != nil {
		t.Fatal(err)
	}
	if err := live.Flush(); err != nil {
		t.Fatal(err)
	}

	conn, r := dialRaw(t, b, fmt.Sprintf("CONNECT {\"user\":%q,\"pass\":%q,\"name\":%q,\"verbose\":false,\"pedantic\":false}\r\nSUB %s 1\r\nSUB %s %s 2\r\nPING\r\n",
		subjects.FrontUser, pw, subjects.ConnNamePrimary, subjects.DiscoveryPing+".FROZEN", subjects.Login, subjects.QueueGroup))
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "PONG") {
		t.Fatalf("connect the frozen server: %q, %v", line, err)
	}
	// The same frozen server's storage connection, known by its instance
	// mark, and the live one's, which stays.
	storage, sr := dialRaw(t, b, fmt.Sprintf("CONNECT {\"user\":%q,\"pass\":%q,\"name\":%q,\"verbose\":false,\"pedantic\":false}\r\nSUB %s 1\r\nPING\r\n",
		subjects.ServiceUser, pw, subjects.ConnNamePrimary, subjects.InstanceMark("FROZEN")))
	if line, err := sr.ReadString('\n'); err != nil || !strings.HasPrefix(line, "PONG") {
		t.Fatalf("connect the frozen server's storage connection: %q, %v", line, err)
	}
	liveStorage, err := nats.Connect(b.ClientURL(), nats.UserInfo(subjects.ServiceUser, pw), nats.Name(subjects.ConnNameBackup), nats.Timeout(10*time.Second),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { dropped.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	defer liveStorage.Close()
	if _, err := liveStorage.Subscribe(subjects.InstanceMark("LIVE"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := liveStorage.Flush(); err != nil {
		t.Fatal(err)
	}

	// Frozen from here: what the broker sends is read only to see the
	// connection close, never answered.
	started := time.Now()
	// Within seconds (about frozenAfter); the bound is loose for a busy
	// machine, and far below the minute pings would take.
	const within = 15 * time.Second
	_ = conn.SetReadDeadline(time.Now().Add(2 * within))
	for {
		if _, err := r.ReadString('\n'); err != nil {
			if took := time.Since(started); took > within {
				t.Fatalf("frozen server disconnected after %v, want within %v (%v)", took, within, err)
			}
			t.Logf("frozen server disconnected after %v", time.Since(started).Round(time.Millisecond))
			break
		}
	}
	_ = storage.SetReadDeadline(time.Now().Add(within))
	for {
		if _, err := sr.ReadString('\n'); err != nil {
			if took := time.Since(started); took > within {
				t.Fatalf("frozen server's storage connection closed after %v, want within %v (%v)", took, within, err)
			}
			break
		}
	}
	if !live.IsConnected() || !liveStorage.IsConnected() || dropped.Load() != 0 {
		t.Fatalf("the file server that answers lost its connection (connected %v, disconnects %d)", live.IsConnected(), dropped.Load())
	}
}
