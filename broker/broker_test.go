package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/certs"
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
	b, err := startOrErr(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startOrErr is start for a caller that can do something about an error.
func startOrErr(t *testing.T, cfg Config) (*Broker, error) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.ServicePassword == "" {
		cfg.ServicePassword = pw
	}
	cfg.Logger = quiet()
	b, err := Start(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(b.Shutdown)
	return b, nil
}

func TestServiceIdentityUsesJetStream(t *testing.T) {
	b := start(t, Config{})
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(subjects.ServiceUser, pw), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: subjects.UsersBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("get: %v", err)
	}
	// And nothing else: a bucket that is not ftfs's cannot be written.
	other, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx, "k", []byte("v")); err == nil {
		t.Fatal("the service identity wrote into a bucket that is not ftfs's")
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
	// The cluster port too, at once: nats-server itself would wait out
	// its readiness deadline on the failed listener.
	start := time.Now()
	_, err = Start(Config{Port: -1, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: pw, Logger: quiet(),
		Cluster: "ftfs-test", ClusterPort: port, Routes: []string{fmt.Sprintf("nats-route://127.0.0.1:%d", port)}})
	if err == nil || !strings.Contains(err.Error(), "cluster port") || time.Since(start) > 10*time.Second {
		t.Fatalf("cluster port in use: err = %v after %v, want one naming the cluster port at once", err, time.Since(start))
	}
}

// A frozen client keeps its socket open but answers no PING; the broker must
// drop it (and with it its queue subscriptions) within seconds.
func TestFrozenClientIsDroppedWithinSeconds(t *testing.T) {
	b := start(t, Config{PingInterval: 500 * time.Millisecond, MaxPingsOut: 2})
	conn, r := dialRaw(t, b, fmt.Sprintf("CONNECT {\"user\":%q,\"pass\":%q,\"verbose\":false,\"pedantic\":false}\r\nSUB ftfs.frozen q 1\r\n", subjects.ServiceUser, pw))
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

// dialRaw opens a connection to b that speaks the protocol by hand: it
// reads the broker's INFO, sends lines, and is left to the caller to read
// (or, to play a frozen client, not to answer).
func dialRaw(t *testing.T, b *Broker, lines string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, lines); err != nil {
		t.Fatal(err)
	}
	return conn, r
}

// startCluster starts three brokers as one cluster, each with base's
// settings, and returns their client URLs and cluster ports.
func startCluster(t *testing.T, base Config) (urls []string, clusterPorts []int) {
	t.Helper()
	// The ports are free when chosen and taken when a broker listens; a
	// process of another test package running meanwhile may take one
	// first. Then the whole cluster starts again on other ports.
	for attempt := 1; ; attempt++ {
		urls, clusterPorts, err := startClusterOn(t, base, ftfstest.FreePorts(t, 3))
		if err == nil {
			return urls, clusterPorts
		}
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("cluster start, attempt %d: %v; again on other ports", attempt, err)
	}
}

func startClusterOn(t *testing.T, base Config, clusterPorts []int) (urls []string, _ []int, err error) {
	t.Helper()
	var routes []string
	for _, p := range clusterPorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	// A broker that started before another failed stays up until the
	// test's end (its cleanup): its routes name this attempt's ports,
	// which the next attempt does not use.
	for i := range 3 {
		cfg := base
		if cfg.Port == 0 {
			cfg.Port = -1
		}
		if cfg.HTTPPort == 0 {
			cfg.HTTPPort = -1
		}
		cfg.Name, cfg.Cluster, cfg.ClusterPort, cfg.Routes = fmt.Sprintf("n%d", i+1), "ftfs-test", clusterPorts[i], routes
		b, err := startOrErr(t, cfg)
		if err != nil {
			return nil, nil, err
		}
		urls = append(urls, b.ClientURL())
	}
	return urls, clusterPorts, nil
}

func TestThreeBrokersFormOneJetStreamCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start takes seconds")
	}
	urls, _ := startCluster(t, Config{})
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(subjects.ServiceUser, pw), nats.Timeout(10*time.Second))
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
	urls, _ := startCluster(t, Config{})
	authorizeEveryone(t, strings.Join(urls, ","))
	nc := dialUser(t, strings.Join(urls, ","), "alice")
	bob := dialUser(t, strings.Join(urls, ","), "bob")

	gather := func(reply string) []subjects.BrokerReport {
		t.Helper()
		on := nc
		if strings.HasPrefix(reply, subjects.Inbox("bob")) {
			on = bob
		}
		sub, err := on.SubscribeSync(reply)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := on.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest(subjects.For("alice", subjects.BrokerInfo), reply, nil); err != nil {
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

	// A reply subject outside the asking user's inbox, even another
	// user's inbox, gets no answer from any broker.
	if got := gather(subjects.Inbox("bob") + ".not-alices"); len(got) != 0 {
		t.Fatalf("%d brokers answered alice's request into bob's inbox", len(got))
	}

	// The file servers' census: every broker answers a front connection,
	// and a user may not ask it.
	front, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(subjects.FrontUser, pw), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	census := func(nc *nats.Conn) int {
		t.Helper()
		reply := nc.NewRespInbox()
		sub, err := nc.SubscribeSync(reply)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := nc.PublishRequest(subjects.BrokerCensus, reply, nil); err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			if _, err := sub.NextMsg(time.Second); err != nil {
				return n
			}
			n++
		}
	}
	if n := census(front); n != 3 {
		t.Fatalf("%d brokers answered the census, want 3", n)
	}
	if n := census(nc); n != 0 {
		t.Fatalf("%d brokers answered a user's census", n)
	}
}

// devCerts writes development certificates and names the files.
func devCerts(t *testing.T) (cert, key, ca string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := certs.Dev(dir); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile), filepath.Join(dir, certs.CAFile)
}

// plainINFO connects without TLS, reads the server's INFO and tries to
// go on in plain text; it reports whether the INFO asked for TLS and
// whether the server ever answered a plain-text PING.
func plainINFO(t *testing.T, addr string) (tlsRequired, answered bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("no INFO from %s: %q %v", addr, line, err)
	}
	var info struct {
		TLSRequired bool `json:"tls_required"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &info); err != nil {
		t.Fatalf("INFO %q: %v", line, err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":%q,\"pass\":%q}\r\nPING\r\n", subjects.ServiceUser, pw)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return info.TLSRequired, false // closed on us
		}
		if strings.HasPrefix(line, "PONG") {
			return info.TLSRequired, true
		}
	}
}

func TestTLSBrokerRefusesPlainConnections(t *testing.T) {
	cert, key, ca := devCerts(t)
	b := start(t, Config{TLSCert: cert, TLSKey: key, TLSCA: ca})
	if !strings.HasPrefix(b.ClientURL(), "tls://") {
		t.Fatalf("client URL %s", b.ClientURL())
	}
	// The broker's own in-process connections need no TLS: both run.
	if b.status == nil || b.events == nil {
		t.Fatal("the broker's in-process connections did not start with TLS on")
	}
	addr := strings.TrimPrefix(b.ClientURL(), "tls://")

	if tlsRequired, answered := plainINFO(t, addr); !tlsRequired || answered {
		t.Fatalf("plain-text client: INFO tls_required %v, answered %v", tlsRequired, answered)
	}
	// A client that does not trust the CA cannot connect either.
	if nc, err := nats.Connect("nats://"+addr, nats.UserInfo(subjects.ServiceUser, pw), nats.Timeout(3*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without the CA connected")
	}

	nc, err := nats.Connect("nats://"+addr, nats.UserInfo(subjects.ServiceUser, pw), nats.RootCAs(ca), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("TLS client with the CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("the connection is not TLS")
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Fatalf("TLS state: %v", err)
	}
	// The status responder answers through its in-process connection.
	authorizeEveryone(t, "nats://"+addr, nats.RootCAs(ca))
	user := dialUser(t, "nats://"+addr, "alice", nats.RootCAs(ca))
	m, err := user.Request(subjects.For("alice", subjects.BrokerInfo), nil, 5*time.Second)
	if err != nil {
		t.Fatalf("broker info over TLS: %v", err)
	}
	var r subjects.BrokerReport
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Name == "" {
		t.Fatalf("broker report %q: %v", m.Data, err)
	}
}

func TestTLSNeedsCertificateAndKey(t *testing.T) {
	cert, key, ca := devCerts(t)
	for _, cfg := range []Config{
		{TLSCert: cert},
		{TLSKey: key},
		{TLSCA: ca},
		{TLSCert: cert, TLSKey: key, TLSCA: filepath.Join(t.TempDir(), "missing.pem")},
	} {
		cfg.ServicePassword = pw
		if _, err := cfg.Options(); err == nil {
			t.Errorf("%+v: accepted", cfg)
		}
	}
}

// A tls block in a nats-server configuration file is left as it is.
func TestTLSFromConfigFile(t *testing.T) {
	cert, key, ca := devCerts(t)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	err := os.WriteFile(conf, fmt.Appendf(nil, `
server_name: tls-from-file
listen: 127.0.0.1:-1
jetstream { store_dir: %q }
tls { cert_file: %q, key_file: %q }
`, t.TempDir(), cert, key), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	b := start(t, Config{ConfigFile: conf, Port: -1})
	if !strings.HasPrefix(b.ClientURL(), "tls://") {
		t.Fatalf("client URL %s: the config file's tls block was lost", b.ClientURL())
	}
	addr := strings.TrimPrefix(b.ClientURL(), "tls://")
	if tlsRequired, answered := plainINFO(t, addr); !tlsRequired || answered {
		t.Fatalf("plain-text client: INFO tls_required %v, answered %v", tlsRequired, answered)
	}
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(subjects.ServiceUser, pw), nats.RootCAs(ca), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("TLS client with the CA: %v", err)
	}
	nc.Close()
	if b.status == nil {
		t.Fatal("the status responder's in-process connection did not start")
	}
}

func TestTLSClusterRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start takes seconds")
	}
	cert, key, ca := devCerts(t)
	urls, ports := startCluster(t, Config{TLSCert: cert, TLSKey: key, TLSCA: ca})
	routeAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	// A route starts with the TLS handshake: a plain-text peer never gets
	// the INFO.
	conn, err := net.DialTimeout("tcp", routeAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "CONNECT {}\r\nPING\r\n")
	if got, _ := io.ReadAll(conn); strings.Contains(string(got), "INFO") || strings.Contains(string(got), "PONG") {
		t.Fatalf("a plain-text route peer was answered: %q", got)
	}
	conn.Close()
	// A TLS peer without a certificate from the CA is refused.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pem)
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", routeAddr, &tls.Config{RootCAs: pool})
	if err == nil {
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = tc.Read(make([]byte, 1))
		tc.Close()
	}
	if err == nil {
		t.Fatal("a route peer without a client certificate was accepted")
	}
	t.Logf("route peer without a certificate: %v", err)
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(subjects.ServiceUser, pw), nats.RootCAs(ca), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ftfstest.Eventually(t, 30*time.Second, "an R3 bucket over TLS routes", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "r3", Replicas: 3})
		if err != nil {
			return false
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return false
		}
		info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
		return info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2
	})
}

// The monitoring port: every nats-server endpoint by default, /healthz
// alone with MonitorHealth, nothing with MonitorOff; on loopback unless
// told otherwise, whatever host the client port listens on.
func TestMonitoringPortServesWhatItIsTold(t *testing.T) {
	get := func(url string) int {
		t.Helper()
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	full := start(t, Config{Host: "0.0.0.0"})
	if u := full.MonitorURL(); !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("monitoring port at %s with the client port on 0.0.0.0, want loopback", u)
	}
	for _, path := range []string{"/healthz", "/varz", "/connz"} {
		if code := get(full.MonitorURL() + path); code != http.StatusOK {
			t.Errorf("full monitoring: %s answered %d", path, code)
		}
	}
	health := start(t, Config{Monitor: MonitorHealth})
	if code := get(health.MonitorURL() + "/healthz"); code != http.StatusOK {
		t.Errorf("health only: /healthz answered %d", code)
	}
	for _, path := range []string{"/varz", "/connz", "/jsz", "/accountz"} {
		if code := get(health.MonitorURL() + path); code != http.StatusNotFound {
			t.Errorf("health only: %s answered %d, want 404", path, code)
		}
	}
	if off := start(t, Config{Monitor: MonitorOff}); off.MonitorURL() != "" {
		t.Errorf("monitoring off, yet a port at %s", off.MonitorURL())
	}
	if _, err := (Config{Monitor: "some", ServicePassword: pw}).Options(); err == nil || !strings.Contains(err.Error(), "monitoring") {
		t.Errorf("an unknown monitoring mode: %v", err)
	}
}
