package fileserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ftfs/ftfs/broker"
	"github.com/ftfs/ftfs/subjects"
)

// TestRequestsCountedOnceWithTheirCode checks the request counters and
// histograms: a refused request counts under its wire code, a request
// whose token is not a session under 401, and every answer is timed once.
func TestRequestsCountedOnceWithTheirCode(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	u := dialUser(t, url, AdminUser, "admin-password")

	var fi subjects.FileInfo
	if err := u.call(subjects.Stat, subjects.NameRequest{Name: "no/such/file"}, &fi); subjects.CodeOf(err) != subjects.CodeNotFound {
		t.Fatalf("stat of a missing file: %v", err)
	}
	// A malformed body: strict decoding refuses an unknown field.
	if err := u.call(subjects.Stat, map[string]string{"name": "x", "bogus": "1"}, &fi); subjects.CodeOf(err) != subjects.CodeInvalid {
		t.Fatalf("stat with an unknown field: %v", err)
	}
	u.token = "not-a-session"
	var who subjects.SessionInfo
	if err := u.call(subjects.WhoAmI, subjects.Empty{}, &who); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("whoami with a made-up token: %v", err)
	}

	m := s.metrics
	for _, want := range []struct {
		endpoint string
		code     string
		n        float64
	}{
		{"login", outcomeOK, 1},
		{"stat", string(subjects.CodeNotFound), 1},
		{"stat", string(subjects.CodeInvalid), 1},
		{"stat", outcomeOK, 0},
		{"whoami", string(subjects.CodeUnauthorized), 1},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(want.endpoint, want.code)); got != want.n {
			t.Errorf("requests{endpoint=%q,code=%q} = %v, want %v", want.endpoint, want.code, got, want.n)
		}
	}
	// A request answered twice (a reply and a late one) counts once.
	stats := m.requests.WithLabelValues("stat", string(subjects.CodeNotFound))
	before := testutil.ToFloat64(stats)
	mr := &measuredRequest{endpoint: "stat", arrived: time.Now()}
	s.answered(mr, subjects.Errorf(subjects.CodeNotFound, "gone"))
	s.answered(&earlyPut{Request: mr}, subjects.Errorf(subjects.CodeNotFound, "gone"))
	if got := testutil.ToFloat64(stats) - before; got != 1 {
		t.Errorf("a request answered twice counted %v times", got)
	}

	// Every answer is timed once: each endpoint's histogram counts its
	// requests.
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	answered, timed := map[string]float64{}, map[string]float64{}
	for _, mf := range families {
		for _, metric := range mf.GetMetric() {
			var endpoint string
			for _, l := range metric.GetLabel() {
				if l.GetName() == "endpoint" {
					endpoint = l.GetValue()
				}
			}
			switch mf.GetName() {
			case "ftfs_requests_total":
				answered[endpoint] += metric.GetCounter().GetValue()
			case "ftfs_request_duration_seconds":
				timed[endpoint] = float64(metric.GetHistogram().GetSampleCount())
			}
		}
	}
	if len(answered) == 0 {
		t.Fatal("no request counted")
	}
	for endpoint, n := range answered {
		if timed[endpoint] != n {
			t.Errorf("endpoint %s: %v answered, %v timed", endpoint, n, timed[endpoint])
		}
	}
}

// TestWriteCheck checks the write check's answers: writable with its one
// broker, the same answer for a moment after, not writable with its
// broker gone, and not writable at once as the server stops.
func TestWriteCheck(t *testing.T) {
	b, err := broker.Start(broker.Config{
		Port: -1, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: testServicePassword,
		SystemPassword: testSystemPassword, Logger: startTestLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	s := startTestServer(t, b.ClientURL(), RolePrimary)

	h := s.checkWrite()
	if !h.Writable || h.Reason != "" || h.Brokers.Seen != 1 || h.Brokers.Needed != 1 || len(h.Leaderless) != 0 {
		t.Fatalf("write check on a healthy broker: %+v", h)
	}
	if again := s.checkWrite(); !again.Checked.Equal(h.Checked) {
		t.Errorf("a second check at once was made again (%v, then %v), not reused", h.Checked, again.Checked)
	}

	b.Shutdown()
	deadline := time.Now().Add(30 * time.Second)
	for h = s.checkWrite(); h.Writable; h = s.checkWrite() {
		if time.Now().After(deadline) {
			t.Fatalf("still writable 30s after its broker stopped: %+v", h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(h.Reason, "quorum") {
		t.Errorf("reason with the broker gone: %q", h.Reason)
	}

	go s.Stop()
	deadline = time.Now().Add(10 * time.Second)
	for h = s.checkWrite(); h.Reason != notServing; h = s.checkWrite() {
		if time.Now().After(deadline) {
			t.Fatalf("a stopping server's write check says %+v", h)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsServedFromStartToStop starts a server before its broker: its
// metrics address answers at once, alive and not writable, while it
// connects; writable once it serves; closed once it has stopped. Scrapes
// run all along, so that the race detector sees them beside the start.
func TestMetricsServedFromStartToStop(t *testing.T) {
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started := make(chan *Server, 1)
	startErr := make(chan error, 1)
	go func() {
		s, err := Start(ctx, Config{
			Servers: []string{fmt.Sprintf("nats://127.0.0.1:%d", ports[0])}, ServicePassword: testServicePassword,
			AdminPassword: "admin-password", Role: RolePrimary, Logger: startTestLogger(), MetricsAddr: addr,
		})
		if err != nil {
			startErr <- err
			return
		}
		started <- s
	}()

	hc := http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string, error) {
		resp, err := hc.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if status, _, err := get(HealthPath); err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no answer on /healthz while the server starts")
		}
		time.Sleep(20 * time.Millisecond)
	}
	status, body, err := get(WriteHealthPath)
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, notServing) {
		t.Fatalf("/healthz/write while connecting: %d %q %v", status, body, err)
	}
	scrapeValue := func(name string) float64 {
		t.Helper()
		status, body, err := get(MetricsPath)
		if err != nil || status != http.StatusOK {
			t.Fatalf("scrape: %d %v", status, err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("parse the scrape: %v", err)
		}
		mf, ok := mfs[name]
		if !ok || len(mf.GetMetric()) != 1 {
			t.Fatalf("scrape has no single %s", name)
		}
		return mf.GetMetric()[0].GetGauge().GetValue()
	}
	if v := scrapeValue("ftfs_writable"); v != 0 {
		t.Fatalf("ftfs_writable %v while connecting", v)
	}

	scraping, stopScraping := context.WithCancel(ctx)
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for scraping.Err() == nil {
			_, _, _ = get(MetricsPath)
			_, _, _ = get(WriteHealthPath)
		}
	}()
	b, err := broker.Start(broker.Config{
		Port: ports[0], HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: testServicePassword,
		SystemPassword: testSystemPassword, Logger: startTestLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	var s *Server
	select {
	case s = <-started:
	case err := <-startErr:
		t.Fatal(err)
	}
	stopScraping()
	<-scraped
	deadline = time.Now().Add(30 * time.Second)
	for scrapeValue("ftfs_writable") != 1 {
		if time.Now().After(deadline) {
			_, body, _ := get(WriteHealthPath)
			t.Fatalf("not writable 30s after its start: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	s.Stop()
	if _, _, err := get(HealthPath); err == nil {
		t.Fatal("the metrics address still answers after Stop")
	}
}
