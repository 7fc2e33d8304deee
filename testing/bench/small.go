package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// small puts -small-count files of -small-size with -small-clients clients
// at once, lists them, gets them and deletes them, through ftfs and the
// direct object store, -runs times. Each ftfs client is a connection of
// its own, as is each object store client.
func (b *bench) small() {
	stores := map[string][]store{sysFTFS: b.ftfsClients(b.cfg.SmallClients), sysDirect: b.directClients(b.cfg.SmallClients)}
	content := ftfstest.RandomBytes(int(b.cfg.SmallSize))
	for run := 1; run <= b.cfg.Runs; run++ {
		dir := fmt.Sprintf("small/%d", run)
		name := func(i int) string { return fmt.Sprintf("%s/%05d", dir, i) }
		order := rotate([]string{sysFTFS, sysDirect}, run-1)
		for _, system := range order {
			b.smallBatch(run, system, "put", b.cfg.SmallCount, stores[system], func(ctx context.Context, s store, i int) error {
				// Files differ: their index leads the content.
				data := bytes.Clone(content)
				binary.BigEndian.PutUint64(data, uint64(i))
				return s.put(ctx, name(i), bytes.NewReader(data), int64(len(data)))
			})
			if system == sysFTFS {
				b.settle("backup replica of "+dir, b.replicaCount(dir, b.cfg.SmallCount))
			} else {
				b.settle(system+" small puts", nil)
			}
		}
		for _, system := range order {
			for range b.cfg.ListRepeat {
				b.smallList(run, system, stores[system][0], dir+"/")
			}
		}
		for _, system := range order {
			b.smallBatch(run, system, "get", b.cfg.SmallCount, stores[system], func(ctx context.Context, s store, i int) error {
				n, err := s.get(ctx, name(i), io.Discard)
				if err == nil && n != b.cfg.SmallSize {
					err = fmt.Errorf("%s: got %d bytes, want %d", name(i), n, b.cfg.SmallSize)
				}
				return err
			})
			b.settle(system+" small gets", nil)
		}
		deletes := min(b.cfg.SmallDeletes, b.cfg.SmallCount)
		for _, system := range order {
			if deletes == 0 {
				break
			}
			b.smallBatch(run, system, "delete", deletes, stores[system], func(ctx context.Context, s store, i int) error {
				return s.del(ctx, name(i))
			})
			b.settle(system+" small deletes", nil)
		}
		b.smallCleanup(dir, deletes, name, stores[sysDirect])
	}
}

// deleteEverywhere deletes the n files name gives from both buckets,
// over the cleaners' connections, through the object store API.
func (b *bench) deleteEverywhere(what string, n int, cleaners []store, name func(int) string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, bucket := range []string{subjects.FilesBucket, directBucket} {
		// The cleaners' connections, on this bucket.
		handles := make([]store, len(cleaners))
		for i, c := range cleaners {
			d := c.(directStore)
			obs, err := d.bucket(ctx, bucket)
			if err != nil {
				b.tb.Fatalf("clean up: %v", err)
			}
			d.obs = obs
			handles[i] = d
		}
		failed, first, _ := b.batch(n, handles, func(ctx context.Context, s store, i int) error {
			return s.del(ctx, name(i))
		})
		if failed > 0 {
			b.tb.Errorf("clean up %s from %s: %d deletes failed; the first: %v", what, bucket, failed, first)
		}
	}
}

// smallCleanup deletes the small files the timed deletes left, from both
// buckets, through the object store API (as `nats object rm` would): an
// ftfs delete lists every file, to be sure that no other name holds the
// version it purges, so deleting thousands through ftfs takes minutes of
// time that measures nothing new. The file servers and the backup see
// these deletes as any other.
func (b *bench) smallCleanup(dir string, from int, name func(int) string, cleaners []store) {
	b.deleteEverywhere(dir, b.cfg.SmallCount-from, cleaners, func(i int) string { return name(from + i) })
	b.settle("backup replica without "+dir, b.replicaCount(dir, 0))
	b.compact()
}

// ftfsClients logs n clients of the bench user in, each with its own
// connection.
func (b *bench) ftfsClients(n int) []store {
	var out []store
	for range n {
		out = append(out, ftfsStore{c: b.login(benchUser)})
	}
	return out
}

// directClients opens the direct bucket over n connections of their own.
func (b *bench) directClients(n int) []store {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []store
	for range n {
		d, err := openDirect(ctx, b.serviceConn())
		if err != nil {
			b.tb.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// smallBatch does op on the first n small files, the clients taking the
// next file as they finish one, and records the wall time. A batch with a
// failure is a failed sample (the rate would flatter it).
func (b *bench) smallBatch(run int, system, op string, n int, stores []store, do func(context.Context, store, int) error) {
	start := time.Now()
	failed, first, finished := b.batch(n, stores, do)
	smp := Sample{Phase: "small", Op: op, System: system, Run: run, Clients: len(stores), Files: n,
		Bytes: int64(n) * b.cfg.SmallSize, Seconds: since(start)}
	if failed > 0 {
		smp.Err = fmt.Sprintf("%d of %d failed; the first: %v", failed, n, first)
	} else if !finished {
		smp.Err = fmt.Sprintf("did not finish within %v", b.cfg.opTimeout())
	}
	b.add(smp)
	b.logf("small run %d: %s %s %d×%s, %d clients: %s", run, system, op, n, sizeText(b.cfg.SmallSize), len(stores), describe(smp))
}

// batch does op on items 0 to n-1, each client taking the next item as it
// finishes one, within the operation timeout.
func (b *bench) batch(n int, stores []store, do func(context.Context, store, int) error) (failed int, first error, finished bool) {
	ctx, cancel := b.ctx()
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := do(ctx, s, i); err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return failed, first, ctx.Err() == nil
}

// smallList lists the small files once with one client.
func (b *bench) smallList(run int, system string, s store, prefix string) {
	ctx, cancel := b.ctx()
	defer cancel()
	var n int
	took, err := timed(func() (err error) {
		n, err = s.list(ctx, prefix)
		return err
	})
	if err == nil && n != b.cfg.SmallCount {
		err = fmt.Errorf("listed %d files, want %d", n, b.cfg.SmallCount)
	}
	smp := b.add(Sample{Phase: "small", Op: "list", System: system, Run: run, Clients: 1, Files: n, Seconds: took.Seconds(), Err: errText(err)})
	b.logf("small run %d: %s list: %s", run, system, describe(smp))
}
