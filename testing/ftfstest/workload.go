package ftfstest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
)

// Workload is a set of clients uploading, downloading, listing and deleting
// files of mixed sizes while a test injects faults. It records every
// operation a client was told succeeded, so that Verify can check that
// nothing acknowledged was lost.
type Workload struct {
	sys     *System
	clients []*client.Client
	sizes   []int
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	acked    map[string]string // name -> digest of its last acknowledged put
	sizeOf   map[string]int    // name -> size of its last put
	deleted  map[string]bool   // acknowledged deletes not followed by a put
	failures []error
	ops      int
	slowest  time.Duration
	slowOp   string   // what the slowest operation was
	done     []opSpan // every finished operation, for failover figures
}

// opSpan is one operation's time span.
type opSpan struct {
	kind       string // operation and size: spans of one kind compare
	what       string // which client did what, to find it in the logs
	size       int    // bytes moved (puts and gets)
	start, end time.Time
	ok         bool
}

// StartWorkload starts n clients (new users) moving files of the given
// sizes until Stop.
func (sys *System) StartWorkload(t testing.TB, n int, sizes ...int) *Workload {
	t.Helper()
	w := &Workload{sys: sys, sizes: sizes, acked: map[string]string{}, sizeOf: map[string]int{}, deleted: map[string]bool{}}
	for range n {
		sys.mu.Lock()
		sys.loadUsers++
		name := fmt.Sprintf("load%d", sys.loadUsers)
		sys.mu.Unlock()
		sys.AddUser(t, name)
		var opts []client.Option
		if *workloadLog {
			h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
			opts = append(opts, client.WithLogger(slog.New(h).With("client", name)))
		}
		w.clients = append(w.clients, sys.Login(t, name, opts...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for i, c := range w.clients {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(ctx, i, c)
		}()
	}
	t.Cleanup(w.Stop)
	return w
}

// workloadLog gives every workload client a logger: a failover's client
// side (requests sent again, uploads resumed) next to the servers' logs.
var workloadLog = flag.Bool("workload.log", false, "log the workload clients' events to stderr (debug level)")

// opTimeout bounds one operation: longer than any failover should take.
const opTimeout = 90 * time.Second

func (w *Workload) run(ctx context.Context, id int, c *client.Client) {
	rng := mrand.New(mrand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	var mine []string
	user := c.User()
	for n := 0; ctx.Err() == nil; n++ {
		op := rng.IntN(10)
		start := time.Now()
		octx, cancel := context.WithTimeout(context.Background(), opTimeout)
		var err error
		var what, kind string
		var moved int
		switch {
		case op < 4 || len(mine) == 0: // put
			name := fmt.Sprintf("load/%s/%d", user, n)
			size := w.sizes[rng.IntN(len(w.sizes))]
			data := NewStream(int64(size))
			what = fmt.Sprintf("put %s (%d bytes)", name, size)
			kind, moved = fmt.Sprintf("put %d", size), size
			if _, err = c.Put(octx, name, data, int64(size)); err == nil {
				w.mu.Lock()
				w.acked[name] = data.Digest()
				w.sizeOf[name] = size
				delete(w.deleted, name)
				w.mu.Unlock()
				mine = append(mine, name)
			}
		case op < 7: // get and compare
			name := mine[rng.IntN(len(mine))]
			what = "get " + name
			w.mu.Lock()
			moved = w.sizeOf[name]
			kind = fmt.Sprintf("get %d", moved)
			w.mu.Unlock()
			h := NewDigester()
			if _, err = c.Get(octx, name, h); err == nil {
				w.mu.Lock()
				want := w.acked[name]
				w.mu.Unlock()
				if h.Digest() != want {
					err = fmt.Errorf("content differs from the acknowledged put")
				}
			}
		case op < 9: // list
			what, kind = "list", "list"
			var files []client.FileInfo
			if files, err = c.List(octx, fmt.Sprintf("load/%s/", user)); err == nil {
				for _, f := range files {
					if !slices.Contains(mine, f.Name) {
						err = fmt.Errorf("listing shows %s, which this client never stored or deleted", f.Name)
					}
				}
			}
		default: // delete
			i := rng.IntN(len(mine))
			name := mine[i]
			what, kind = "delete "+name, "delete"
			if err = c.Delete(octx, name); err == nil {
				w.mu.Lock()
				delete(w.acked, name)
				w.deleted[name] = true
				w.mu.Unlock()
				mine = slices.Delete(mine, i, i+1)
			}
		}
		cancel()
		took := time.Since(start)
		w.mu.Lock()
		w.ops++
		if took > w.slowest {
			w.slowest, w.slowOp = took, fmt.Sprintf("client %d: %s at %s", id, what, start.Format("15:04:05.000"))
		}
		if ctx.Err() == nil {
			w.done = append(w.done, opSpan{kind: kind, what: fmt.Sprintf("client %d: %s", id, what), size: moved, start: start, end: start.Add(took), ok: err == nil})
		}
		if err != nil && ctx.Err() == nil {
			w.failures = append(w.failures, fmt.Errorf("client %d: %s after %v: %w", id, what, took.Round(time.Millisecond), err))
		}
		w.mu.Unlock()
	}
}

// Stop ends the workload and waits for its clients' last operations.
func (w *Workload) Stop() {
	w.cancel()
	w.wg.Wait()
}

// Ops is the number of operations done so far.
func (w *Workload) Ops() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ops
}

// WaitOps waits until the workload has done n more operations.
func (w *Workload) WaitOps(t testing.TB, n int) {
	t.Helper()
	target := w.Ops() + n
	Eventually(t, 3*time.Minute, fmt.Sprintf("%d more operations", n), func() bool { return w.Ops() >= target })
}

// Report is what Verify found.
type Report struct {
	Operations, Failed int
	// Verified files read back byte-identical; Lost ones could not be
	// read, Corrupted ones differ; Resurrected are acknowledged deletes
	// that came back.
	Verified, Lost, Corrupted, Resurrected int
	Slowest                                time.Duration
	SlowestOp                              string
}

func (r Report) String() string {
	return fmt.Sprintf("%d operations (%d failed), %d files verified, %d lost, %d corrupted, %d deleted files back, slowest operation %v (%s)",
		r.Operations, r.Failed, r.Verified, r.Lost, r.Corrupted, r.Resurrected, r.Slowest.Round(time.Millisecond), r.SlowestOp)
}

// Verify stops the workload and checks: no operation failed; every
// acknowledged file reads back byte-identical (through the service and the
// plain object store); every acknowledged delete stays deleted; no other
// file of the workload is listed.
func (w *Workload) Verify(t testing.TB) Report {
	t.Helper()
	w.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	rep := Report{Operations: w.ops, Failed: len(w.failures), Slowest: w.slowest, SlowestOp: w.slowOp}
	defer func() { t.Logf("workload: %s", rep) }()
	for _, err := range w.failures {
		t.Errorf("operation failed: %v", err)
	}
	c := w.clients[0]
	// A deadline for each check, not for all: a long soak leaves a
	// thousand files, some of 65 MiB, to read back twice.
	check := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	obs := w.sys.ObjectStore(t)
	for name, want := range w.acked {
		var h *Digester
		var err error
		// A read that times out says nothing of the file (a soak can leave
		// the disk busy for minutes): it is tried again before the file
		// counts as lost; an answer (not found, other bytes) is final.
		for attempt := 0; attempt < 3; attempt++ {
			h = NewDigester()
			if _, err = c.Get(check(), name, h); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, client.ErrUnavailable) {
				break
			}
			t.Logf("acknowledged %s: %v; reading it again", name, err)
		}
		if errors.Is(err, client.ErrIntegrity) { // bytes came back, other ones
			t.Errorf("acknowledged %s: %v", name, err)
			rep.Corrupted++
			continue
		}
		if err != nil {
			t.Errorf("acknowledged %s: %v", name, err)
			rep.Lost++
			continue
		}
		if h.Digest() != want {
			t.Errorf("acknowledged %s: content differs", name)
			rep.Corrupted++
			continue
		}
		// nats.go's object store reads through direct gets that any
		// replica answers: one still catching up after a broker fault
		// says "not found" or gives short content for a while. ftfs's own
		// read above is through the leader; this one is tried for 20 s.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			h = NewDigester()
			var r jetstream.ObjectResult
			r, err = obs.Get(check(), name)
			if err == nil {
				_, err = io.Copy(h, r)
				r.Close()
			}
			if (err == nil && h.Digest() == want) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || h.Digest() != want {
			t.Errorf("acknowledged %s through the object store: %v", name, err)
			rep.Corrupted++
			continue
		}
		rep.Verified++
	}
	for name := range w.deleted {
		if _, err := c.Stat(check(), name); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("deleted %s: stat says %v", name, err)
			rep.Resurrected++
		}
	}
	for _, wc := range w.clients {
		files, err := c.List(check(), "load/"+wc.User()+"/")
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, f := range files {
			if _, ok := w.acked[f.Name]; !ok {
				t.Errorf("listed %s, which no acknowledged operation left there", f.Name)
			}
		}
	}
	return rep
}

// Figures are a fault's cost to the workload.
type Figures struct {
	// Recovery is the time from the fault to the end of the first
	// operation that started after it and succeeded.
	Recovery time.Duration
	// ExtraP50 and ExtraP99 are the extra latency of the operations in
	// flight at the fault: each one's time less the median time of the
	// operations of its kind (operation and size) not hit by the fault, or,
	// for a transfer of a size no such operation had, the median time per
	// byte of transfers of at least 4 MiB times its size.
	ExtraP50, ExtraP99 time.Duration
	InFlight           int
	// Worst names the in-flight operation with the most extra latency.
	Worst string
}

func (f Figures) String() string {
	s := fmt.Sprintf("next success %v after the fault; %d operations in flight, extra latency p50 %v, p99 %v",
		f.Recovery.Round(time.Millisecond), f.InFlight, f.ExtraP50.Round(time.Millisecond), f.ExtraP99.Round(time.Millisecond))
	if f.Worst != "" {
		s += "; worst: " + f.Worst
	}
	return s
}

// FiguresSince computes the cost of a fault injected at fault.
func (w *Workload) FiguresSince(fault time.Time) Figures {
	w.mu.Lock()
	defer w.mu.Unlock()
	var f Figures
	var inflight []opSpan
	normal := map[string][]time.Duration{}
	first := time.Time{}
	for _, op := range w.done {
		switch {
		case op.start.Before(fault) && op.end.After(fault):
			inflight = append(inflight, op)
		default:
			normal[op.kind] = append(normal[op.kind], op.end.Sub(op.start))
		}
		if op.ok && !op.start.Before(fault) && (first.IsZero() || op.end.Before(first)) {
			first = op.end
		}
	}
	if !first.IsZero() {
		f.Recovery = first.Sub(fault)
	}
	// perByte is the median time per byte of big transfers, by operation.
	perByte := map[string][]float64{}
	for _, op := range w.done {
		if op.size >= 4<<20 && !(op.start.Before(fault) && op.end.After(fault)) {
			verb := strings.Fields(op.kind)[0]
			perByte[verb] = append(perByte[verb], float64(op.end.Sub(op.start))/float64(op.size))
		}
	}
	var extra []time.Duration
	var worst time.Duration
	for _, op := range inflight {
		ref, how := percentile(normal[op.kind], 50), fmt.Sprintf("%d like it", len(normal[op.kind]))
		if rates := perByte[strings.Fields(op.kind)[0]]; len(normal[op.kind]) == 0 && op.size > 0 && len(rates) > 0 {
			slices.Sort(rates)
			ref, how = time.Duration(rates[len(rates)/2]*float64(op.size)), fmt.Sprintf("per byte of %d transfers", len(rates))
		}
		e := max(0, op.end.Sub(op.start)-ref)
		extra = append(extra, e)
		if e >= worst {
			worst = e
			f.Worst = fmt.Sprintf("%s at %s took %v, reference %v (%s)", op.what, op.start.Format("15:04:05.000"), op.end.Sub(op.start).Round(time.Millisecond), ref.Round(time.Millisecond), how)
		}
	}
	f.InFlight = len(inflight)
	f.ExtraP50, f.ExtraP99 = percentile(extra, 50), percentile(extra, 99)
	return f
}

// LongestStall is the longest time in which no operation succeeded.
func (w *Workload) LongestStall() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ends []time.Time
	for _, op := range w.done {
		if op.ok {
			ends = append(ends, op.end)
		}
	}
	slices.SortFunc(ends, time.Time.Compare)
	var stall time.Duration
	for i := 1; i < len(ends); i++ {
		stall = max(stall, ends[i].Sub(ends[i-1]))
	}
	return stall
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// Acked returns the digest of every file the workload was told it stored
// and has not deleted since.
func (w *Workload) Acked() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.acked)
}
