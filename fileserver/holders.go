package fileserver

// Holders. An upload relayed through the servers is held by one of them at
// a time, whose writer (writer.go) stores its chunks; the record's holder
// is the one that wrote it last (its checkpoint's compare-and-set deposes
// any other). holders is the one owner of the uploads this server holds:
// whoever stops holding one goes through it, and waits for the writer to
// have stopped, so that no chunk is still being stored after.

import (
	"context"
	"errors"
	"hash"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// holders is the uploads this server holds, by upload ID: one writer each.
type holders struct {
	wg *sync.WaitGroup // the server's: every goroutine it starts
	mu sync.Mutex
	m  map[string]*upload
}

func newHolders(wg *sync.WaitGroup) *holders {
	return &holders{wg: wg, m: map[string]*upload{}}
}

// take makes u the upload held under its ID, and stops the writer of the
// one it replaces, if any.
func (h *holders) take(u *upload) {
	h.mu.Lock()
	old := h.m[u.rec.ID]
	h.m[u.rec.ID] = u
	h.mu.Unlock()
	if old != nil {
		old.stop()
	}
}

// get is the upload held under id, or nil.
func (h *holders) get(id string) *upload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[id]
}

// drop stops holding upload id, whichever writer holds it, and returns
// once that writer has stopped.
func (h *holders) drop(id string) {
	h.mu.Lock()
	u := h.m[id]
	delete(h.m, id)
	h.mu.Unlock()
	if u != nil {
		u.stop()
	}
}

// dropIfHeld stops holding u, if it is still the upload held under its ID
// (not replaced since), and returns once its writer has stopped.
func (h *holders) dropIfHeld(u *upload) {
	if h.forget(u) {
		u.stop()
	}
}

// forget stops holding u, if it is still the upload held under its ID,
// without waiting for its writer: the writer's own way out. It says
// whether u was held.
func (h *holders) forget(u *upload) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	held := h.m[u.rec.ID] == u
	if held {
		delete(h.m, u.rec.ID)
	}
	return held
}

// dropLater drops upload id, if it is held, in the background: its writer
// may be in the middle of storing a chunk.
func (h *holders) dropLater(id string) {
	if h.get(id) == nil {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.drop(id)
	}()
}

// stopAll stops every writer, as the server stops. The uploads stay
// resumable on another server from their last checkpoint.
func (h *holders) stopAll() {
	h.mu.Lock()
	held := make([]*upload, 0, len(h.m))
	for _, u := range h.m {
		held = append(held, u)
	}
	h.mu.Unlock()
	for _, u := range held {
		u.stop()
	}
}

// count is how many uploads are held.
func (h *holders) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// hold makes this instance the holder of an upload and starts its writer.
func (s *Server) hold(rec uploadRecord, rev uint64, h hash.Hash, fences []uint64, mark string) *upload {
	ctx, cancel := context.WithCancel(s.ctx)
	u := &upload{
		s: s, rec: rec, rev: rev, hash: h, fences: fences, mark: mark,
		queue:  make(chan chunkMsg, 2*subjects.UploadWindow),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		saved:  time.Now(),
	}
	s.holders.take(u)
	// Another server taking the upload over asks this one to let go first
	// (dropElsewhere). Without the subscription the checkpoint's
	// compare-and-set still deposes this holder, only later.
	sub, err := s.nc.Subscribe(subjects.UploadRelease(rec.ID), func(m *nats.Msg) {
		s.holders.dropIfHeld(u)
		_ = m.Respond(nil)
	})
	if err != nil {
		s.log.Warn("upload held without its release subscription", "upload", rec.ID, "err", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(u.done)
		if sub != nil {
			defer func() { _ = sub.Unsubscribe() }()
		}
		u.run()
	}()
	return u
}

// dropElsewhere asks the server holding an upload, if another one does,
// to let it go, and waits (briefly) until it has: only then may this one
// take the upload over, commit or abort it without a chunk still being
// stored after. No responders means that nobody holds it; a holder that
// does not answer in time (frozen, or killed and not yet noticed) is
// deposed by the record's compare-and-set all the same.
func (s *Server) dropElsewhere(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := s.nc.RequestWithContext(ctx, subjects.UploadRelease(id), nil); err != nil && !errors.Is(err, nats.ErrNoResponders) {
		s.log.Warn("holder of an upload did not let go", "upload", id, "err", err)
	}
}
