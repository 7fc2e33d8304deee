package fileserver

// Metrics and health (Config.MetricsAddr). Each file server serves, on
// its own HTTP address:
//
//   - /metrics: Prometheus metrics of this process (names ftfs_..., plus
//     Go's and the process's own), from the server's own registry;
//   - /healthz: 200 while the process serves HTTP at all;
//   - /healthz/write: whether a write would succeed now: 200 with a small
//     JSON body when it would, 503 with the reason when it would not.
//
// The write check asks what a write needs, not only what this server
// believes: enough brokers answering the census for a quorum (the
// question a load balancer or an operator's probe cannot answer from the
// brokers' own /healthz, which says yes on a lone survivor), and a leader
// for the files stream and every bucket's stream (stream info with a short
// deadline). Its answer is kept for writeCheckFresh, so that a storm of
// probes and scrapes costs JetStream one check per moment.
//
// Labels stay few: endpoint names and wire codes, never user or file
// names, so that the metrics port shows nobody's business (SECURITY.md).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// Paths the metrics address serves.
const (
	MetricsPath     = "/metrics"
	HealthPath      = "/healthz"
	WriteHealthPath = "/healthz/write"
)

// Bounds of the write check: the census waits censusWait for the brokers'
// answers, each stream's info streamLeaderWait; an answer is reused for
// writeCheckFresh.
const (
	censusWait       = 300 * time.Millisecond
	streamLeaderWait = 2 * time.Second
	writeCheckFresh  = 2 * time.Second
)

// notServing is the write check's reason while the server starts or
// stops.
const notServing = "starting or stopping: this server is not serving requests"

// outcomeOK is the code label of a request answered without an error.
const outcomeOK = "ok"

// serverMetrics are a server's metrics, its write check and the HTTP
// server that shows them. The counters exist whether or not an address is
// served, so that the code counting needs no test of it.
type serverMetrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec   // endpoint, code
	duration      *prometheus.HistogramVec // endpoint
	received      *prometheus.CounterVec   // via
	served        *prometheus.CounterVec   // via
	loginFailures *prometheus.CounterVec   // via, outcome

	// stateReady is set once Start has connected and opened the buckets
	// (what the collectors read is there); serving while, besides, Stop
	// has not begun.
	stateReady atomic.Bool
	serving    atomic.Bool

	checkMu sync.Mutex // one write check at a time; the others wait for its answer
	last    writeHealth

	httpSrv  *http.Server
	httpDone chan struct{} // closed when the HTTP server has stopped serving
	stopOnce sync.Once
}

// writeHealth is the answer of /healthz/write.
type writeHealth struct {
	Writable bool   `json:"writable"`
	Reason   string `json:"reason,omitempty"`
	// Brokers is the last census: the brokers that answered, and how
	// many a quorum needs (zero before the first).
	Brokers store.BrokerCount `json:"brokers"`
	// Leaderless are the streams that had no leader to take a write.
	Leaderless []string  `json:"streams_without_leader,omitempty"`
	Checked    time.Time `json:"checked"`
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftfs_requests_total",
			Help: `Requests answered by this server, by endpoint and outcome: "ok", or the wire error code.`,
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ftfs_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by endpoint.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftfs_received_bytes_total",
			Help: `File content received, by way: "put" (whole small files), "upload" (chunks relayed through this server), "direct" (uploads stored by their client, counted at commit).`,
		}, []string{"via"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftfs_served_bytes_total",
			Help: `File content served, by way: "get" (small files in one answer), "download" (batches JetStream sends for this server), "replica" (batches from the backup's replica).`,
		}, []string{"via"}),
		loginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftfs_login_failures_total",
			Help: `Password checks refused, by where the password came ("connect", "login", "passwd") and why ("rejected": wrong name or password; "throttled": too many failures).`,
		}, []string{"via", "outcome"}),
	}
}

// registerMetrics registers the counters, and the collectors that read
// s's state as it is when scraped rather than count it twice.
func (s *Server) registerMetrics() {
	m := s.metrics
	gauge := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	const transfersHelp = `Transfers in progress: "upload" the uploads this server holds (stores the chunks of), "download" the downloads running on any server as this one hears of them (counted only with a transfer limit).`
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.received, m.served, m.loginFailures,
		gauge("ftfs_info", "Always 1; its labels are this server's role and version.",
			prometheus.Labels{"role": s.cfg.Role, "version": Version}, func() float64 { return 1 }),
		gauge("ftfs_read_only", "1 while storage has lost its quorum and this server refuses writes.", nil,
			func() float64 { return flag(m.stateReady.Load() && s.store.ReadOnly()) }),
		gauge("ftfs_writable", "1 when the write check (/healthz/write) finds that a write would succeed.", nil,
			func() float64 { return flag(s.checkWrite().Writable) }),
		gauge("ftfs_brokers_seen", "Brokers that answered the write check's census.", nil,
			func() float64 { return float64(s.checkWrite().Brokers.Seen) }),
		gauge("ftfs_brokers_needed", "Brokers the JetStream meta group needs up for a quorum, as the census says.", nil,
			func() float64 { return float64(s.checkWrite().Brokers.Needed) }),
		gauge("ftfs_transfers", transfersHelp, prometheus.Labels{"kind": "upload"},
			func() float64 { return float64(s.holders.count()) }),
		gauge("ftfs_transfers", transfersHelp, prometheus.Labels{"kind": "download"},
			func() float64 { return float64(s.usage.downloadsRunning(time.Now())) }),
		gauge("ftfs_files", "Files stored, as this server's files index holds them.", nil,
			func() float64 { files, _ := s.usage.totals(); return float64(files) }),
		gauge("ftfs_stored_bytes", "Bytes of the files stored, as this server's files index holds them.", nil,
			func() float64 { _, bytes := s.usage.totals(); return float64(bytes) }),
		gauge("ftfs_uploads_unfinished", "Uploads opened and not yet committed, aborted or expired, on any server.", nil,
			func() float64 { return float64(s.usage.unfinishedUploads()) }),
		gauge("ftfs_index_loaded", "1 once the files index has read what the bucket held when its watch began.", nil,
			func() float64 { _, loading := s.usage.filesProgress(); return flag(!loading) }),
	}
	if fb := s.cfg.Fallback; fb != nil {
		cs = append(cs,
			gauge("ftfs_replica_pending_files", "Changes of the files bucket the backup's replica has seen and not yet copied.", nil,
				func() float64 { return float64(fb.Lag().Pending) }),
			gauge("ftfs_replica_lag_seconds", "How long the oldest change the replica has not yet copied has waited; 0 when none.", nil,
				func() float64 {
					lag := fb.Lag()
					if lag.Pending == 0 || lag.Oldest.IsZero() {
						return 0
					}
					return time.Since(lag.Oldest).Seconds()
				}),
		)
	}
	m.reg.MustRegister(cs...)
}

// measuredRequest is a request on its way to its answer: the endpoint it
// came to and when, so that the answer counts it once.
type measuredRequest struct {
	micro.Request
	endpoint string
	arrived  time.Time
	answered atomic.Bool
}

// measured counts the requests of h's endpoint and times them from their
// arrival to their answer (answered).
func (s *Server) measured(endpoint string, h micro.Handler) micro.Handler {
	// Made now, so that every endpoint shows in the metrics from the start.
	s.metrics.duration.WithLabelValues(endpoint)
	return micro.HandlerFunc(func(req micro.Request) {
		h.Handle(&measuredRequest{Request: req, endpoint: endpoint, arrived: time.Now()})
	})
}

// answered counts req, if it came through measured and was not counted
// yet, with the outcome of err.
func (s *Server) answered(req micro.Request, err error) {
	mr := measuredOf(req)
	if mr == nil || !mr.answered.CompareAndSwap(false, true) {
		return
	}
	code := outcomeOK
	if err != nil {
		code = string(wireCode(err))
	}
	s.metrics.requests.WithLabelValues(mr.endpoint, code).Inc()
	s.metrics.duration.WithLabelValues(mr.endpoint).Observe(time.Since(mr.arrived).Seconds())
}

// measuredOf finds the measuredRequest under the wrappers a request may
// have on its way (putEarly's).
func measuredOf(req micro.Request) *measuredRequest {
	switch r := req.(type) {
	case *measuredRequest:
		return r
	case *earlyPut:
		return measuredOf(r.Request)
	}
	return nil
}

// wireCode is the code err goes out with (reply): storage out of reach is
// CodeUnavailable, not a server bug.
func wireCode(err error) subjects.Code {
	code := subjects.CodeOf(err)
	if code == subjects.CodeInternal && store.Unavailable(err) {
		return subjects.CodeUnavailable
	}
	return code
}

// countReceived and countServed count file content bytes moved by way of
// via.
func (s *Server) countReceived(via string, n int64) {
	if n > 0 {
		s.metrics.received.WithLabelValues(via).Add(float64(n))
	}
}

func (s *Server) countServed(via string, n int64) {
	if n > 0 {
		s.metrics.served.WithLabelValues(via).Add(float64(n))
	}
}

// countLoginFailure counts a refused password check (passwordLogin).
func (s *Server) countLoginFailure(via string, throttled bool) {
	outcome := "rejected"
	if throttled {
		outcome = "throttled"
	}
	s.metrics.loginFailures.WithLabelValues(via, outcome).Inc()
}

// downloadsRunning counts the downloads still counting at now.
func (u *usage) downloadsRunning(now time.Time) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, until := range u.downloads {
		if now.Before(until) {
			n++
		}
	}
	return n
}

// totals are the files in the index and their bytes.
func (u *usage) totals() (files int, bytes int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, n := range u.stored {
		bytes += n
	}
	return len(u.files), bytes
}

// checkWrite answers whether a write would succeed now, from the last
// check if it is fresh, else from a new one. Concurrent callers share one
// check.
func (s *Server) checkWrite() writeHealth {
	m := s.metrics
	if !m.serving.Load() {
		// Said at once, whatever was found a moment ago: a server that
		// stops takes no more writes.
		return writeHealth{Reason: notServing, Checked: time.Now().UTC()}
	}
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	if !m.last.Checked.IsZero() && time.Since(m.last.Checked) < writeCheckFresh {
		return m.last
	}
	h := s.newWriteCheck()
	h.Checked = time.Now().UTC()
	m.last = h
	return h
}

// newWriteCheck checks, in order, what a write needs of storage: a quorum
// of brokers, and a leader for every bucket's stream.
func (s *Server) newWriteCheck() writeHealth {
	var h writeHealth
	count, err := store.CountBrokers(s.front, censusWait)
	h.Brokers = count
	switch {
	case err != nil:
		h.Reason = fmt.Sprintf("storage quorum unknown: %v", err)
		return h
	case !count.Quorum():
		h.Reason = fmt.Sprintf("storage quorum lost: %d broker(s) answer, %d needed", count.Seen, count.Needed)
		return h
	case s.store.ReadOnly():
		// The census has found a quorum again; the server waits until
		// the brokers have elected their leaders.
		h.Reason = fmt.Sprintf("read-only: storage quorum was lost and is not yet confirmed back (%d broker(s) answer, %d needed)", count.Seen, count.Needed)
		return h
	}
	_, streams := s.bucketStreams()
	errs := make([]error, len(streams))
	ctx, cancel := context.WithTimeout(s.ctx, streamLeaderWait)
	defer cancel()
	var wg sync.WaitGroup
	for i, name := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.store.StreamLeader(ctx, name)
		}()
	}
	wg.Wait()
	var reasons []string
	for i, err := range errs {
		if err != nil {
			h.Leaderless = append(h.Leaderless, streams[i])
			reasons = append(reasons, err.Error())
		}
	}
	if len(reasons) > 0 {
		h.Reason = "no leader to take a write: " + strings.Join(reasons, "; ")
		return h
	}
	h.Writable = true
	return h
}

// startMetrics listens on cfg.MetricsAddr, if set, and serves there until
// stopMetrics. A listen error stops the start: an operator who asked for
// metrics must not find them silently missing.
func (s *Server) startMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("file server: metrics address %q: %w", s.cfg.MetricsAddr, err)
	}
	m := s.metrics
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       10 * time.Second,
	}))
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+WriteHealthPath, s.serveWriteHealth)
	m.httpSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	m.httpDone = make(chan struct{})
	go func() { // owned by stopMetrics, which waits for httpDone
		defer close(m.httpDone)
		if err := m.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	s.log.Info("metrics and health served", "addr", ln.Addr().String(),
		"paths", []string{MetricsPath, HealthPath, WriteHealthPath})
	return nil
}

// stopMetrics stops the HTTP server, letting a scrape in progress finish
// for a moment.
func (s *Server) stopMetrics() {
	m := s.metrics
	m.stopOnce.Do(func() {
		if m.httpSrv == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := m.httpSrv.Shutdown(ctx); err != nil {
			_ = m.httpSrv.Close()
		}
		<-m.httpDone
	})
}

func (s *Server) serveWriteHealth(w http.ResponseWriter, _ *http.Request) {
	h := s.checkWrite()
	body, err := json.Marshal(h)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !h.Writable {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(append(body, '\n'))
}
