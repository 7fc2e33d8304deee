package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestMetricsCountTheWorkload runs a known workload against a primary and
// a backup that both serve --metrics-addr, scrapes both, parses what they
// serve as Prometheus does, and checks that the counters add up to the
// workload across the two: requests by endpoint and outcome, the refused
// ones with their wire code, the bytes moved each way, the latency
// histograms' counts; and that the health endpoints say a write would
// succeed.
func TestMetricsCountTheWorkload(t *testing.T) {
	t.Parallel() // see doc.go
	ports := ftfstest.FreePorts(t, 2)
	addrs := map[string]string{
		"primary": fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"backup":  fmt.Sprintf("127.0.0.1:%d", ports[1]),
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"),
		ftfstest.RoleArgs("primary", "--metrics-addr", addrs["primary"]),
		ftfstest.RoleArgs("backup", "--metrics-addr", addrs["backup"]))
	sys.AddUser(t, "meter")
	c := sys.Login(t, "meter")
	relayed := sys.Login(t, "meter", client.WithRelayedUploads())
	ctx := ftfstest.Context(t, 3*time.Minute)

	// The workload: small puts and gets, one file uploaded through a
	// server and one straight into storage, both read back in batches,
	// one request refused, one connection refused its password.
	const puts, gets, small = 5, 4, 10 << 10
	const big = 3<<20 + 123
	for i := range puts {
		if _, err := c.Put(ctx, fmt.Sprintf("m/small-%d", i), bytes.NewReader(ftfstest.RandomBytes(small)), small); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := relayed.Put(ctx, "m/relayed", bytes.NewReader(ftfstest.RandomBytes(big)), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "m/direct", bytes.NewReader(ftfstest.RandomBytes(big)), big); err != nil {
		t.Fatal(err)
	}
	for i := range gets {
		if _, err := c.Get(ctx, fmt.Sprintf("m/small-%d", i), io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"m/relayed", "m/direct"} {
		if _, err := c.Get(ctx, name, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Stat(ctx, "m/missing"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("stat of a missing file: %v, want ErrNotFound", err)
	}
	if _, err := sys.Dial(t, "meter", "not-the-password"); err == nil {
		t.Fatal("a wrong password connected")
	}

	scrapes := map[string]ftfstest.Metrics{}
	for role, addr := range addrs {
		scrapes[role] = ftfstest.Scrape(t, addr)
	}
	total := func(name string, labels map[string]string) float64 {
		var n float64
		for _, mfs := range scrapes {
			n += mfs.Sum(name, labels)
		}
		return n
	}
	for _, want := range []struct {
		endpoint, code string
		n              float64
	}{
		{"put", "ok", puts},
		{"get", "ok", gets + 2},
		{"stat", string(subjects.CodeNotFound), 1},
		{"upload-open", "ok", 2},
	} {
		if got := total("ftfs_requests_total", map[string]string{"endpoint": want.endpoint, "code": want.code}); got != want.n {
			t.Errorf("ftfs_requests_total{endpoint=%q,code=%q} on both servers: %v, want %v", want.endpoint, want.code, got, want.n)
		}
	}
	if got := total("ftfs_requests_total", map[string]string{"endpoint": "put"}); got != puts {
		t.Errorf("put requests of any outcome: %v, want %v", got, puts)
	}
	commits := total("ftfs_requests_total", map[string]string{"endpoint": "upload-commit", "code": "ok"}) +
		total("ftfs_requests_total", map[string]string{"endpoint": "upload-commit-here", "code": "ok"})
	if commits != 2 {
		t.Errorf("upload commits answered ok: %v, want 2", commits)
	}
	chunks := float64((big + subjects.ChunkSize - 1) / subjects.ChunkSize)
	if got := total("ftfs_requests_total", map[string]string{"endpoint": "chunk", "code": "ok"}); got < chunks {
		t.Errorf("chunks of the relayed upload answered ok: %v, want at least %v", got, chunks)
	}
	if got := total("ftfs_requests_total", map[string]string{"endpoint": "download", "code": "ok"}); got < 2 {
		t.Errorf("download batches: %v, want at least one per large file", got)
	}
	for _, want := range []struct {
		metric, via string
		n           float64
	}{
		{"ftfs_received_bytes_total", "put", puts * small},
		{"ftfs_received_bytes_total", "upload", big},
		{"ftfs_received_bytes_total", "direct", big},
		{"ftfs_served_bytes_total", "get", gets * small},
		{"ftfs_served_bytes_total", "download", 2 * (big - subjects.ChunkSize)},
	} {
		if got := total(want.metric, map[string]string{"via": want.via}); got < want.n {
			t.Errorf("%s{via=%q}: %v, want at least %v", want.metric, want.via, got, want.n)
		}
	}
	if got := total("ftfs_login_failures_total", map[string]string{"via": "connect", "outcome": "rejected"}); got < 1 {
		t.Errorf("login failures of the wrong password: %v", got)
	}

	for role, mfs := range scrapes {
		// Every answer is timed once: each endpoint's histogram counts as
		// many requests as its counters do.
		answered := map[string]float64{}
		for _, m := range mfs.Family(t, "ftfs_requests_total").GetMetric() {
			answered[ftfstest.Label(m, "endpoint")] += m.GetCounter().GetValue()
		}
		timed := map[string]uint64{}
		for _, m := range mfs.Family(t, "ftfs_request_duration_seconds").GetMetric() {
			timed[ftfstest.Label(m, "endpoint")] = m.GetHistogram().GetSampleCount()
		}
		for endpoint, n := range answered {
			if float64(timed[endpoint]) != n {
				t.Errorf("%s: endpoint %s answered %v requests, its histogram counts %d", role, endpoint, n, timed[endpoint])
			}
		}
		for _, endpoint := range []string{"put", "get", "login", "upload-commit"} {
			if _, ok := timed[endpoint]; !ok {
				t.Errorf("%s: no latency histogram for endpoint %s", role, endpoint)
			}
		}
		for name, want := range map[string]float64{"ftfs_read_only": 0, "ftfs_writable": 1, "ftfs_index_loaded": 1} {
			if got := mfs.Sum(name, nil); got != want {
				t.Errorf("%s: %s = %v, want %v", role, name, got, want)
			}
		}
		if got := mfs.Sum("ftfs_files", nil); got < puts+2 {
			t.Errorf("%s: ftfs_files = %v, want at least %d", role, got, puts+2)
		}
		if got := mfs.Sum("ftfs_info", map[string]string{"role": role}); got != 1 {
			t.Errorf("%s: ftfs_info{role=%q} = %v", role, role, got)
		}
		_, hasLag := mfs["ftfs_replica_pending_files"]
		if hasLag != (role == "backup") {
			t.Errorf("%s: replica lag shown: %v", role, hasLag)
		}
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "ftfs_transfers", "ftfs_brokers_seen"} {
			mfs.Family(t, name)
		}
		// No user or file name is shown, whatever the label.
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if v := l.GetValue(); strings.Contains(v, "meter") || strings.Contains(v, "m/") {
						t.Errorf("%s: %s shows %s=%q", role, mf.GetName(), l.GetName(), v)
					}
				}
			}
		}

		status, body := ftfstest.HTTPGet(t, "http://"+addrs[role]+"/healthz")
		if status != http.StatusOK {
			t.Errorf("%s: /healthz: %d %s", role, status, body)
		}
		h := ftfstest.CheckWrite(t, addrs[role])
		if h.Status != http.StatusOK || !h.Writable || h.Brokers.Seen != 1 {
			t.Errorf("%s: /healthz/write: %d %+v", role, h.Status, h)
		}
	}
}

// TestMetricsAddrInUse checks that a file server whose --metrics-addr
// cannot be listened on does not start, and says why.
func TestMetricsAddrInUse(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctx := ftfstest.Context(t, time.Minute)
	cmd := exec.CommandContext(ctx, ftfstest.Binary(t), "primary", "--server", "nats://127.0.0.1:1",
		"--index-dir", "", "--metrics-addr", taken.Addr().String())
	cmd.Env = append(os.Environ(), subjects.EnvServicePassword+"=x")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("ftfs primary with its metrics address taken: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "metrics address") || !strings.Contains(string(out), taken.Addr().String()) {
		t.Fatalf("ftfs primary with its metrics address taken says:\n%s", out)
	}
}
