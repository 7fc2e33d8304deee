package ftfstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

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
	acked    map[string][]byte // name -> content of its last acknowledged put
	deleted  map[string]bool   // acknowledged deletes not followed by a put
	failures []error
	ops      int
	slowest  time.Duration
	done     []opSpan // every finished operation, for failover figures
}

// opSpan is one operation's time span.
type opSpan struct {
	start, end time.Time
	ok         bool
}

// StartWorkload starts n clients (new users) moving files of the given
// sizes until Stop.
func (sys *System) StartWorkload(t testing.TB, n int, sizes ...int) *Workload {
	t.Helper()
	w := &Workload{sys: sys, sizes: sizes, acked: map[string][]byte{}, deleted: map[string]bool{}}
	for range n {
		sys.mu.Lock()
		sys.loadUsers++
		name := fmt.Sprintf("load%d", sys.loadUsers)
		sys.mu.Unlock()
		sys.AddUser(t, name)
		w.clients = append(w.clients, sys.Login(t, name))
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
		var what string
		switch {
		case op < 4 || len(mine) == 0: // put
			name := fmt.Sprintf("load/%s/%d", user, n)
			data := RandomBytes(w.sizes[rng.IntN(len(w.sizes))])
			what = "put " + name
			if _, err = c.Put(octx, name, bytes.NewReader(data), int64(len(data))); err == nil {
				w.mu.Lock()
				w.acked[name] = data
				delete(w.deleted, name)
				w.mu.Unlock()
				mine = append(mine, name)
			}
		case op < 7: // get and compare
			name := mine[rng.IntN(len(mine))]
			what = "get " + name
			var buf bytes.Buffer
			if _, err = c.Get(octx, name, &buf); err == nil {
				w.mu.Lock()
				want := w.acked[name]
				w.mu.Unlock()
				if !bytes.Equal(buf.Bytes(), want) {
					err = fmt.Errorf("content differs from the acknowledged put")
				}
			}
		case op < 9: // list
			what = "list"
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
			what = "delete " + name
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
		w.slowest = max(w.slowest, took)
		if ctx.Err() == nil {
			w.done = append(w.done, opSpan{start: start, end: start.Add(took), ok: err == nil})
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

// Verify stops the workload and checks: no operation failed; every
// acknowledged file reads back byte-identical (through the service and the
// plain object store); every acknowledged delete stays deleted; no other
// file of the workload is listed.
func (w *Workload) Verify(t testing.TB) {
	t.Helper()
	w.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("workload: %d operations, %d files acknowledged, %d deletes, slowest operation %v", w.ops, len(w.acked), len(w.deleted), w.slowest.Round(time.Millisecond))
	for _, err := range w.failures {
		t.Errorf("operation failed: %v", err)
	}
	c := w.clients[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	obs := w.sys.ObjectStore(t)
	for name, want := range w.acked {
		var buf bytes.Buffer
		if _, err := c.Get(ctx, name, &buf); err != nil {
			t.Errorf("acknowledged %s: %v", name, err)
			continue
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("acknowledged %s: content differs", name)
		}
		if got, err := obs.GetBytes(ctx, name); err != nil || !bytes.Equal(got, want) {
			t.Errorf("acknowledged %s through the object store: %v", name, err)
		}
	}
	for name := range w.deleted {
		if _, err := c.Stat(ctx, name); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("deleted %s: stat says %v", name, err)
		}
	}
	for _, wc := range w.clients {
		files, err := c.List(ctx, "load/"+wc.User()+"/")
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, f := range files {
			if _, ok := w.acked[f.Name]; !ok {
				t.Errorf("listed %s, which no acknowledged operation left there", f.Name)
			}
		}
	}
}

// Figures are a fault's cost to the workload.
type Figures struct {
	// Recovery is the time from the fault to the end of the first
	// operation that started after it and succeeded.
	Recovery time.Duration
	// InFlightP50 and InFlightP99 are the latencies of the operations in
	// flight at the fault, against Normal, the median of the others.
	InFlightP50, InFlightP99, Normal time.Duration
	InFlight                         int
}

func (f Figures) String() string {
	return fmt.Sprintf("next success %v after the fault; %d operations in flight took p50 %v, p99 %v (others: median %v)",
		f.Recovery.Round(time.Millisecond), f.InFlight, f.InFlightP50.Round(time.Millisecond), f.InFlightP99.Round(time.Millisecond), f.Normal.Round(time.Millisecond))
}

// FiguresSince computes the cost of a fault injected at fault.
func (w *Workload) FiguresSince(fault time.Time) Figures {
	w.mu.Lock()
	defer w.mu.Unlock()
	var f Figures
	var inflight, normal []time.Duration
	first := time.Time{}
	for _, op := range w.done {
		d := op.end.Sub(op.start)
		switch {
		case op.start.Before(fault) && op.end.After(fault):
			inflight = append(inflight, d)
		default:
			normal = append(normal, d)
		}
		if op.ok && !op.start.Before(fault) && (first.IsZero() || op.end.Before(first)) {
			first = op.end
		}
	}
	if !first.IsZero() {
		f.Recovery = first.Sub(fault)
	}
	f.InFlight = len(inflight)
	f.InFlightP50, f.InFlightP99 = percentile(inflight, 50), percentile(inflight, 99)
	f.Normal = percentile(normal, 50)
	return f
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
