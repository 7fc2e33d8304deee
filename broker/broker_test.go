package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

const pw = "broker-test-secret"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, cfg Config) *Broker {
	t.Helper()
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = -1
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.ServicePassword == "" {
		cfg.ServicePassword = pw
	}
	cfg.Logger = quiet()
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

func TestServiceIdentityUsesJetStream(t *testing.T) {
	b := start(t, Config{})
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(subjects.ServiceUser, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("get: %v", err)
	}
}

func TestConnectionsWithoutServiceCredentialsNeedTheCallout(t *testing.T) {
	b := start(t, Config{})
	// No file server answers the callout here, so every other connection
	// is refused: nothing gets in without the file service's consent.
	for _, opt := range []nats.Option{nats.UserInfo("alice", "whatever"), nats.UserInfo(subjects.ServiceUser, "wrong"), nats.Token("x")} {
		nc, err := nats.Connect(b.ClientURL(), opt, nats.Timeout(3*time.Second))
		if err == nil {
			nc.Close()
			t.Fatal("connection without valid credentials was accepted")
		}
	}
	if _, err := nats.Connect(b.ClientURL(), nats.Timeout(3*time.Second)); err == nil {
		t.Fatal("anonymous connection was accepted")
	}
}

func TestMissingServicePasswordIsAClearError(t *testing.T) {
	_, err := Start(Config{Port: -1, HTTPPort: -1, DataDir: t.TempDir(), Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), subjects.EnvServicePassword) {
		t.Fatalf("err = %v, want one naming %s", err, subjects.EnvServicePassword)
	}
}

func TestPortInUseIsAClearError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = Start(Config{Port: port, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: pw, Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(port)) {
		t.Fatalf("err = %v, want one naming port %d", err, port)
	}
}

// A frozen client keeps its socket open but answers no PING; the broker must
// drop it (and with it its queue subscriptions) within seconds.
func TestFrozenClientIsDroppedWithinSeconds(t *testing.T) {
	b := start(t, Config{PingInterval: 500 * time.Millisecond, MaxPingsOut: 2})
	addr := strings.TrimPrefix(b.ClientURL(), "nats://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"user\":%q,\"pass\":%q,\"verbose\":false,\"pedantic\":false}\r\nSUB ftfs.frozen q 1\r\n", subjects.ServiceUser, pw)
	started := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if time.Since(started) > 6*time.Second {
				t.Fatalf("dropped only after %v (err %v)", time.Since(started), err)
			}
			return // closed by the broker: dropped
		}
		if strings.HasPrefix(line, "-ERR") && strings.Contains(line, "Stale") {
			return
		}
	}
}

func TestThreeBrokersFormOneJetStreamCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start takes seconds")
	}
	ports := ftfstest.FreePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var urls []string
	for i := range 3 {
		b := start(t, Config{Name: fmt.Sprintf("n%d", i+1), Cluster: "ftfs-test", ClusterPort: ports[i], Routes: routes})
		urls = append(urls, b.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(subjects.ServiceUser, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "r3", Replicas: 3})
		if err == nil {
			st, err := kv.Status(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				t.Fatalf("cluster info %+v", info.Cluster)
			}
			return
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("no R3 bucket after 30s: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Every broker answers subjects.BrokerInfo itself, so one request sees the
// whole cluster and who leads its JetStream meta group.
func TestEveryBrokerReportsTheSameMetaLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start takes seconds")
	}
	ports := ftfstest.FreePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var urls []string
	for i := range 3 {
		b := start(t, Config{Name: fmt.Sprintf("n%d", i+1), Cluster: "ftfs-test", ClusterPort: ports[i], Routes: routes})
		urls = append(urls, b.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(subjects.ServiceUser, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	gather := func(reply string) []subjects.BrokerReport {
		t.Helper()
		sub, err := nc.SubscribeSync(reply)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := nc.PublishRequest(subjects.BrokerInfo, reply, nil); err != nil {
			t.Fatal(err)
		}
		var out []subjects.BrokerReport
		deadline := time.Now().Add(time.Second)
		for {
			m, err := sub.NextMsg(time.Until(deadline))
			if err != nil {
				return out
			}
			var r subjects.BrokerReport
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("report %q: %v", m.Data, err)
			}
			out = append(out, r)
		}
	}

	var last []subjects.BrokerReport
	ftfstest.Eventually(t, 30*time.Second, "three brokers naming one meta leader", func() bool {
		last = gather(nc.NewRespInbox())
		if len(last) != 3 {
			return false
		}
		names := map[string]bool{}
		for _, r := range last {
			names[r.Name] = true
			if r.MetaLeader == "" || r.MetaLeader != last[0].MetaLeader || r.Cluster != "ftfs-test" || !r.JetStream || r.URL == "" {
				return false
			}
		}
		return len(names) == 3 && names[last[0].MetaLeader]
	})
	for _, r := range last {
		if r.MetaLeader == r.Name && len(r.MetaPeers) != 2 {
			t.Errorf("meta leader %s lists peers %+v, want the two others", r.Name, r.MetaPeers)
		}
	}

	// A reply subject outside an inbox would have a broker publish with
	// the service identity's rights: no broker answers there.
	if got := gather(subjects.Prefix + ".not-an-inbox"); len(got) != 0 {
		t.Fatalf("%d brokers answered to a reply subject outside an inbox", len(got))
	}
}
