package main

import (
	"bytes"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ftfs/ftfs/internal/bytesize"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// Mixed is one concurrency measurement: some clients of one system doing
// mixed work for -mixed-time.
type Mixed struct {
	System     string  `json:"system"`
	Clients    int     `json:"clients"`
	Run        int     `json:"run"`
	Seconds    float64 `json:"seconds"`
	Ops        int     `json:"ops"` // successful operations
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Bytes      int64   `json:"bytes"` // put and got by successful operations
	// LatencyMS holds every successful operation's latency by kind.
	LatencyMS map[string][]float64 `json:"latency_ms"`
}

func (m Mixed) opsPerSecond() float64 { return float64(m.Ops) / m.Seconds }

// The mixed work: each client puts (35%: files of 4 KiB, or 1 MiB one
// time in five), gets one of its files (45%), lists its files (10%) or
// deletes one (10%), keeping at most mixedKeep files.
var mixedSizes = []int{4 << 10, 1 << 20}

const mixedKeep = 16

// mixed runs the mixed work at each concurrency level, through ftfs (each
// client a user of its own, as the per-user transfer limit expects) and
// the direct object store (each client a connection of its own).
func (b *bench) mixed() {
	top := slices.Max(b.cfg.Clients)
	ftfs, direct := make([]store, 0, top), b.directClients(top)
	b.logf("mixed: making %d users", top)
	for i := range top {
		user := fmt.Sprintf("mix%d", i+1)
		b.sys.AddUser(b.tb, user)
		ftfs = append(ftfs, ftfsStore{c: b.login(user)})
	}
	content := ftfstest.RandomBytes(slices.Max(mixedSizes))
	for _, n := range b.cfg.Clients {
		for run := 1; run <= b.cfg.Runs; run++ {
			for _, system := range rotate([]string{sysFTFS, sysDirect}, run-1) {
				stores := ftfs[:n]
				if system == sysDirect {
					stores = direct[:n]
				}
				b.mixedRun(system, n, run, stores, content)
			}
		}
	}
}

// mixedRun runs one measurement and cleans up after it.
func (b *bench) mixedRun(system string, n, run int, stores []store, content []byte) {
	m := Mixed{System: system, Clients: n, Run: run, LatencyMS: map[string][]float64{}}
	dir := fmt.Sprintf("mix/%d-%d", n, run)
	deadline := time.Now().Add(durationOf(b.cfg.MixedSeconds))
	var mu sync.Mutex
	var wg sync.WaitGroup
	left := make([][]string, len(stores)) // each client's files at the end
	start := time.Now()
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := b.mixedClient(s, fmt.Sprintf("%s/%d", dir, i), mrand.New(mrand.NewPCG(uint64(run), uint64(i))), content, deadline)
			mu.Lock()
			defer mu.Unlock()
			m.Ops += w.ops
			m.Errors += w.errors
			if m.FirstError == "" {
				m.FirstError = w.firstError
			}
			m.Bytes += w.bytes
			for k, v := range w.latency {
				m.LatencyMS[k] = append(m.LatencyMS[k], v...)
			}
			left[i] = w.files
		}()
	}
	wg.Wait()
	m.Seconds = since(start)
	b.res.Mixed = append(b.res.Mixed, m)
	b.logf("mixed %d clients run %d: %s: %d ops in %.1fs (%.0f ops/s, %.1f MB/s), %d errors %s",
		n, run, system, m.Ops, m.Seconds, m.opsPerSecond(), float64(m.Bytes)/1e6/m.Seconds, m.Errors, m.FirstError)
	b.mixedCleanup(system, dir, stores, left)
}

// mixedWork is what one client did.
type mixedWork struct {
	ops, errors int
	firstError  string
	bytes       int64
	latency     map[string][]float64
	files       []string
}

// mixedClient does mixed work until the deadline. The operations come
// from rng, seeded alike for both systems, so that both do the same work.
func (b *bench) mixedClient(s store, dir string, rng *mrand.Rand, content []byte, deadline time.Time) mixedWork {
	w := mixedWork{latency: map[string][]float64{}}
	sizes := map[string]int{}
	for seq := 0; time.Now().Before(deadline); seq++ {
		x := rng.IntN(100)
		size := mixedSizes[0]
		if rng.IntN(5) == 0 {
			size = mixedSizes[1]
		}
		pick := rng.IntN(mixedKeep)
		ctx, cancel := b.ctx()
		var kind, name string
		var err error
		start := time.Now()
		switch {
		case len(w.files) == 0 || (x < 35 && len(w.files) < mixedKeep):
			name = fmt.Sprintf("%s/%d", dir, seq)
			kind = "put " + bytesize.Format(int64(size))
			if err = s.put(ctx, name, bytes.NewReader(content[:size]), int64(size)); err == nil {
				w.files = append(w.files, name)
				sizes[name] = size
				w.bytes += int64(size)
			}
		case x >= 35 && x < 80:
			name = w.files[pick%len(w.files)]
			kind = "get " + bytesize.Format(int64(sizes[name]))
			var got int64
			if got, err = s.get(ctx, name, io.Discard); err == nil {
				w.bytes += got
			}
		case x >= 80 && x < 90:
			kind = "list"
			var n int
			if n, err = s.list(ctx, dir+"/"); err == nil && n != len(w.files) {
				err = fmt.Errorf("listed %d files, want %d", n, len(w.files))
			}
		default: // a delete, or a put the client cannot make with mixedKeep files
			i := pick % len(w.files)
			kind, name = "delete", w.files[i]
			if err = s.del(ctx, name); err == nil {
				w.files = slices.Delete(w.files, i, i+1)
			}
		}
		took := time.Since(start)
		cancel()
		if err != nil {
			w.errors++
			if w.firstError == "" {
				w.firstError = fmt.Sprintf("%s %s: %v", kind, name, err)
			}
			continue
		}
		w.ops++
		w.latency[kind] = append(w.latency[kind], float64(took.Microseconds())/1000)
	}
	return w
}

// mixedCleanup deletes what the clients left, untimed, and waits for the
// system to settle.
func (b *bench) mixedCleanup(system, dir string, stores []store, left [][]string) {
	ctx, cancel := b.ctx()
	defer cancel()
	var wg sync.WaitGroup
	for i, files := range left {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[i] // its owner: only the owner may delete
			for _, name := range files {
				if err := s.del(ctx, name); err != nil {
					b.tb.Errorf("mixed cleanup: delete %s: %v", name, err)
				}
			}
		}()
	}
	wg.Wait()
	if system == sysFTFS {
		b.settle("backup replica without "+dir, b.replicaEmpty(dir))
	} else {
		b.settle(system+" mixed work", nil)
	}
	b.compact()
}

// replicaEmpty says whether the backup's replica holds no file under dir.
func (b *bench) replicaEmpty(dir string) func() bool {
	return func() bool {
		n := 0
		_ = filepath.WalkDir(filepath.Join(b.sys.ReplicaDir, dir), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n == 0
	}
}
