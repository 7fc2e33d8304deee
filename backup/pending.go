package backup

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The replica copies files concurrently, in two lanes: files up to
// largeFile in one, larger ones in the other, so that a small file stored
// right after a large one is copied at once instead of after it (a 64 KiB
// file waited 2–3 s behind a 256 MiB copy, issue 15). Per name, the last
// change seen wins: a newer version or a delete cancels an older copy in
// flight, and a copy places its file only while its change is still the
// newest of its name (checked under the replica's lock, with the rename).

// largeFile is the size above which a file is copied in the large lane.
const largeFile = 8 << 20

// Workers per lane: each holds one chunk in memory at a time.
const (
	smallWorkers = 3
	largeWorkers = 2
)

// change is one version of a file the watch has delivered and the replica
// has not yet copied.
type change struct {
	name string
	info *jetstream.ObjectInfo
	seen time.Time
	// ctx ends when a newer change of the name (or its delete) arrives,
	// or the replica stops.
	ctx    context.Context
	cancel context.CancelFunc
}

// pending holds the newest change not yet applied of each name, and the
// queues of the two lanes. Its lock is taken inside the replica's, never
// the other way round.
type pending struct {
	mu     sync.Mutex
	latest map[string]*change
	queues [2][]*change
	ready  [2]chan struct{} // a token when its queue may hold work
}

func newPending() *pending {
	return &pending{
		latest: map[string]*change{},
		ready:  [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)},
	}
}

func laneOf(info *jetstream.ObjectInfo) int {
	if info.Size > largeFile {
		return 1
	}
	return 0
}

// add records info as the newest change of its name and queues its copy,
// cancelling the copy of an older change of the name. A change already
// pending with the same version (a watch started again delivers it again)
// is left as it is. The change's context derives from ctx.
func (p *pending) add(ctx context.Context, info *jetstream.ObjectInfo, now time.Time) *change {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.latest[info.Name]; old != nil {
		if old.info.NUID == info.NUID && old.info.Digest == info.Digest {
			return old
		}
		old.cancel()
	}
	c := &change{name: info.Name, info: info, seen: now}
	c.ctx, c.cancel = context.WithCancel(ctx)
	p.latest[info.Name] = c
	lane := laneOf(info)
	p.queues[lane] = append(p.queues[lane], c)
	select {
	case p.ready[lane] <- struct{}{}:
	default:
	}
	return c
}

// forget drops whatever change of name is pending: the name was deleted,
// or the replica already holds its newest version.
func (p *pending) forget(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.latest[name]; old != nil {
		old.cancel()
		delete(p.latest, name)
	}
}

// current says whether c is still the newest change of its name.
func (p *pending) current(c *change) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest[c.name] == c
}

// done drops c once applied (or given up), unless a newer change of its
// name replaced it meanwhile. It reports whether nothing is left pending.
func (p *pending) done(c *change) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.latest[c.name] == c {
		delete(p.latest, c.name)
		c.cancel()
	}
	return len(p.latest) == 0
}

// next waits for the oldest queued change of lane that is still the newest
// of its name, or ctx's end (nil).
func (p *pending) next(ctx context.Context, lane int) *change {
	for {
		p.mu.Lock()
		for len(p.queues[lane]) > 0 {
			c := p.queues[lane][0]
			p.queues[lane][0] = nil
			p.queues[lane] = p.queues[lane][1:]
			if p.latest[c.name] == c {
				if len(p.queues[lane]) > 0 { // wake another worker
					select {
					case p.ready[lane] <- struct{}{}:
					default:
					}
				}
				p.mu.Unlock()
				return c
			}
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-p.ready[lane]:
		}
	}
}

// lag is how many changes are pending and when the oldest was seen.
func (p *pending) lag() (n int, oldest time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.latest {
		if oldest.IsZero() || c.seen.Before(oldest) {
			oldest = c.seen
		}
	}
	return len(p.latest), oldest
}

// infos returns the pending changes' object infos by name.
func (p *pending) infos() map[string]*jetstream.ObjectInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]*jetstream.ObjectInfo, len(p.latest))
	for name, c := range p.latest {
		out[name] = c.info
	}
	return out
}

// pendingInfo returns name's pending change, if any.
func (p *pending) pendingInfo(name string) (*jetstream.ObjectInfo, time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.latest[name]
	if !ok {
		return nil, time.Time{}, false
	}
	return c.info, c.seen, true
}
