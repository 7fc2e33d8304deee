package fileserver

// Watches of the files' changes (subjects.Watch): a long poll any server
// answers, from the stream sequence the client last saw. Each server keeps
// the recent changes its files watch (watch.go) reads in a ring, and
// answers from it; a cursor older than the ring is answered from what
// storage keeps (the last meta of each name), flagged compacted, or with
// CodeWatchBehind when the deletes after it may have been swept.

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// Object metadata keys a change's meta carries for the watchers: who made
// it, and which rename it is half of. A rename writes its new name's meta
// (metaRenamedFrom naming the old) and then its old name's tombstone
// (metaRenamedTo naming the new); a watcher sees the pair as one rename.
const (
	metaBy          = "ftfs-by"
	metaRenamedFrom = "ftfs-renamed-from"
	metaRenamedTo   = "ftfs-renamed-to"
)

// changeRingSize bounds the changes a server remembers; a watcher further
// behind gets a compacted answer from storage.
const changeRingSize = 4096

// Bounds of the watches a server holds at once (each holds a request
// slot): beyond them a watch is answered busy, and its client asks again.
const (
	maxHeldWatches        = 32
	maxHeldWatchesPerUser = 4
)

// changeRecord is one meta message: event is nil for the tombstone of a
// rename's old name, which the rename's event covers. Its writer expected
// the name's previous meta at expect (hasExpect: the write said so).
type changeRecord struct {
	seq       uint64
	name      string
	expect    uint64
	hasExpect bool
	event     *subjects.ChangeEvent
}

// changeRing is the changes a server has read in order, with the span of
// stream sequences it holds every meta message of: (from, last]. Its zero
// value is ready: not live until the files watch begins.
//
// A meta replaced before the files watch reads it (a rollup: the watch
// lagging, or replaced after a broker's death) is gone from storage; the
// next meta of its name names its sequence (Nats-Expected-Last-Subject-
// Sequence), so the ring knows what it missed. The metas this server
// wrote itself wait in written until the watch passes them, and fill
// such gaps: a server left alone keeps every change through the loss of
// its broker.
type changeRing struct {
	mu      sync.Mutex
	live    bool
	from    uint64
	last    uint64
	recs    []changeRecord
	written map[uint64]changeRecord // this server's writes past last
	lastOf  map[string]uint64       // the last sequence of each name in recs
	grew    chan struct{}           // closed when recs grows or starts over
	held    map[string]int          // watches held, per user
	total   int
	size    int  // changeRingSize; smaller in tests
	closed  bool // the server is stopping: hold no watch
}

// close answers the watches held at once: a stopping server waits for the
// requests in flight, and a held watch need not make it wait.
func (r *changeRing) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.wake()
}

func (r *changeRing) closing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// begin is called as the files watch starts, with storage's last meta
// sequence then: the metas up to it are read as storage keeps them (the
// last of each name), so the ring holds every change only after it. A
// watch started over continues the ring: it reads again what the ring has,
// which is skipped. Storage holding less than the ring (a stream lost and
// made anew) starts the ring over.
func (r *changeRing) begin(last uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live && last >= r.last {
		return
	}
	r.live, r.from, r.last, r.recs, r.lastOf, r.written = true, last, last, nil, map[string]uint64{}, map[uint64]changeRecord{}
	r.wake()
}

// add records a meta the files watch read, after this server's own writes
// before it, which the watch has passed whether or not it read them. It
// says whether the ring found that it had missed a meta.
func (r *changeRing) add(rec changeRecord) (missed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.live || rec.seq <= r.last {
		return false
	}
	delete(r.written, rec.seq) // the stored message's time is the one
	if len(r.written) > 0 {
		var before []changeRecord
		for seq, w := range r.written {
			if seq < rec.seq {
				before = append(before, w)
				delete(r.written, seq)
			}
		}
		slices.SortFunc(before, func(a, b changeRecord) int { return cmp.Compare(a.seq, b.seq) })
		for _, w := range before {
			missed = r.push(w) || missed
		}
	}
	missed = r.push(rec) || missed
	r.wake()
	return missed
}

// addWritten records a meta this server wrote, until the files watch
// passes it. One the watch passed already is in the ring, or reported
// missed.
func (r *changeRing) addWritten(rec changeRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.live || rec.seq <= r.last {
		return
	}
	r.written[rec.seq] = rec
	if len(r.written) > r.capacity() {
		// The watch is away for long: the oldest write goes, and the
		// ring reports the gap should storage no longer hold it.
		delete(r.written, slices.Min(slices.Collect(maps.Keys(r.written))))
	}
}

func (r *changeRing) capacity() int {
	if r.size == 0 {
		return changeRingSize
	}
	return r.size
}

// push appends rec, in sequence order, to the ring.
func (r *changeRing) push(rec changeRecord) (missed bool) {
	if rec.hasExpect && rec.expect > r.from && r.lastOf[rec.name] != rec.expect {
		// The name's previous meta was replaced before the watch read
		// it: the ring cannot say that change happened.
		r.forget(rec.expect)
		missed = true
	}
	r.recs = append(r.recs, rec)
	r.lastOf[rec.name] = rec.seq
	r.last = rec.seq
	if size := r.capacity(); len(r.recs) > size {
		r.forget(r.recs[len(r.recs)-size-1].seq)
	}
	return missed
}

// forget drops the records up to seq: the ring holds every change only
// after it.
func (r *changeRing) forget(seq uint64) {
	n := 0
	for n < len(r.recs) && r.recs[n].seq <= seq {
		if r.lastOf[r.recs[n].name] == r.recs[n].seq {
			delete(r.lastOf, r.recs[n].name)
		}
		n++
	}
	// Dropped from the front in place: a copy of the whole ring on each
	// change, as the follower hands them over one by one, cost the files
	// index more than a small put's storage calls. Append moves what is
	// left to a new array only as it grows, so each change costs O(1)
	// in the long run and the ring holds at most about twice its size.
	clear(r.recs[:n]) // the names of the dropped records can go
	r.recs = r.recs[n:]
	r.from = max(r.from, seq)
}

func (r *changeRing) wake() {
	if r.grew != nil {
		close(r.grew)
		r.grew = nil
	}
}

// since is the events after seq after, with the last sequence read and a
// channel closed when more is read; covered is false when the ring does not
// hold every change after after.
func (r *changeRing) since(after uint64) (events []subjects.ChangeEvent, last uint64, grew <-chan struct{}, covered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grew == nil {
		r.grew = make(chan struct{})
	}
	if !r.live || after < r.from {
		return nil, r.last, r.grew, false
	}
	for i := len(r.recs); i > 0 && r.recs[i-1].seq > after; i-- {
		if ev := r.recs[i-1].event; ev != nil {
			events = append(events, *ev)
		}
	}
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	return events, r.last, r.grew, true
}

// hold counts a watch of user held; false when too many are.
func (r *changeRing) hold(user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.total >= maxHeldWatches || r.held[user] >= maxHeldWatchesPerUser {
		return false
	}
	if r.held == nil {
		r.held = map[string]int{}
	}
	r.held[user]++
	r.total++
	return true
}

func (r *changeRing) release(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total--
	if r.held[user]--; r.held[user] <= 0 {
		delete(r.held, user)
	}
}

// changeFields are the fields of a meta message a change event shows.
type changeFields struct {
	Name     string `json:"name"`
	Metadata struct {
		Owner       string `json:"ftfs-owner"` // subjects.MetaOwner
		By          string `json:"ftfs-by"`
		RenamedFrom string `json:"ftfs-renamed-from"`
		RenamedTo   string `json:"ftfs-renamed-to"`
	} `json:"metadata"`
	Size    uint64 `json:"size"`
	Deleted bool   `json:"deleted"`
}

// changeOf is the change a meta message stored at seq makes. The tombstone
// of a rename's old name is no event: renamedTo names the new name, whose
// rename event came first.
func changeOf(seq uint64, stored time.Time, data []byte) (ev subjects.ChangeEvent, renamedTo string, err error) {
	var f changeFields
	if err := json.Unmarshal(data, &f); err != nil {
		return ev, "", err
	}
	ev = subjects.ChangeEvent{Seq: seq, Op: subjects.OpPut, Name: f.Name, Size: int64(f.Size),
		Owner: f.Metadata.Owner, By: f.Metadata.By, Time: stored.UTC()}
	if ev.By == "" && !f.Deleted {
		ev.By = f.Metadata.Owner // an upload's commit: its uploader
	}
	switch {
	case f.Deleted:
		ev.Op, ev.Size = subjects.OpDelete, 0
		return ev, f.Metadata.RenamedTo, nil
	case f.Metadata.RenamedFrom != "":
		ev.Op, ev.From = subjects.OpRename, f.Metadata.RenamedFrom
	}
	return ev, "", nil
}

// markRename marks the two meta writes of a rename of from to to.
func markRename(moved, tomb *jetstream.ObjectInfo, from, to string) {
	moved.Metadata[metaRenamedFrom] = from
	tomb.Metadata[metaRenamedTo] = to
}

// changeStored feeds the ring with a meta message the files watch read.
func (s *Server) changeStored(md *jetstream.MsgMetadata, m jetstream.Msg) {
	seq := md.Sequence.Stream
	if !s.changes.wants(seq) {
		return // read as storage keeps it, at a watch's start
	}
	rec, err := changeRecordOf(seq, md.Timestamp, m.Data(), m.Headers().Get(jetstream.ExpectedLastSubjSeqHeader))
	if err != nil {
		s.log.Warn("unreadable file meta message; no change event", "seq", seq, "err", err)
		return
	}
	if s.changes.add(rec) {
		s.log.Warn("a file change was replaced before the files watch read it; watches from before it get what storage keeps",
			"name", rec.name, "seq", seq)
	}
}

// changeWritten feeds the ring with a meta this server stored at seq,
// expecting the name's previous meta at expect.
func (s *Server) changeWritten(seq, expect uint64, data []byte) {
	if !s.changes.wants(seq) {
		return
	}
	if rec, err := changeRecordOf(seq, time.Now(), data, strconv.FormatUint(expect, 10)); err == nil {
		s.changes.addWritten(rec)
	}
}

// changeRecordOf is the record of a meta message and its expected-last-
// subject-sequence header.
func changeRecordOf(seq uint64, stored time.Time, data []byte, expectHeader string) (changeRecord, error) {
	ev, renamedTo, err := changeOf(seq, stored, data)
	if err != nil {
		return changeRecord{}, err
	}
	rec := changeRecord{seq: seq, name: ev.Name}
	if renamedTo == "" {
		rec.event = &ev
	}
	expect, perr := strconv.ParseUint(expectHeader, 10, 64)
	rec.expect, rec.hasExpect = expect, perr == nil
	return rec, nil
}

// wants says whether the ring would record a meta at seq.
func (r *changeRing) wants(seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live && seq > r.last
}

// visibleChange is ev as the user of c sees it through prefix: a rename
// one side of which is hidden is a put or delete of the other side.
func (s *Server) visibleChange(c *call, prefix string, ev subjects.ChangeEvent) (subjects.ChangeEvent, bool) {
	sees := func(name string) bool { return strings.HasPrefix(name, prefix) && s.mayList(c, name) }
	if ev.Op != subjects.OpRename {
		return ev, sees(ev.Name)
	}
	switch to, from := sees(ev.Name), sees(ev.From); {
	case to && from:
		return ev, true
	case to:
		ev.Op, ev.From = subjects.OpPut, ""
		return ev, true
	case from:
		ev.Op, ev.Name, ev.From, ev.Size = subjects.OpDelete, ev.From, "", 0
		return ev, true
	}
	return ev, false
}

// watch answers a subjects.Watch long poll.
func (s *Server) watch(c *call) (any, error) {
	r, err := decodeCall[subjects.WatchRequest](c)
	if err != nil {
		return nil, err
	}
	if r.Max == 0 || r.Max > subjects.MaxWatchEvents {
		r.Max = subjects.MaxWatchEvents
	}
	if r.Now {
		last, err := s.lastFileChange(c.ctx)
		if err != nil {
			return nil, wrapStorage("watch", err)
		}
		return subjects.WatchReply{Events: []subjects.ChangeEvent{}, Next: last}, nil
	}
	wait := min(r.Wait, subjects.MaxWatchWait)
	if wait > 0 {
		if !s.changes.hold(c.user) {
			return nil, subjects.Errorf(subjects.CodeBusy, "too many watches held on this server; ask again")
		}
		defer s.changes.release(c.user)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	after := r.After
	for {
		events, last, grew, covered := s.changes.since(after)
		if !covered && last > after {
			return s.compactedChanges(c, r.Prefix, after, r.Max)
		}
		reply := subjects.WatchReply{Events: []subjects.ChangeEvent{}, Next: max(after, last)}
		for _, ev := range events {
			if ev, ok := s.visibleChange(c, r.Prefix, ev); ok {
				reply.Events = append(reply.Events, ev)
				if len(reply.Events) == r.Max {
					reply.Next = ev.Seq
					break
				}
			}
		}
		if len(reply.Events) > 0 || s.changes.closing() {
			return reply, nil
		}
		if covered {
			after = reply.Next // nothing the user sees up to it
		}
		select {
		case <-grew:
		case <-timer.C:
			return reply, nil
		case <-c.ctx.Done():
			return nil, wrapStorage("watch", c.ctx.Err())
		}
	}
}

// compactedChangesWait bounds the read of what storage keeps.
const compactedChangesWait = 10 * time.Second

// compactedChanges answers a watch the ring does not cover from the metas
// storage keeps after after: the last of each name. The deletes are kept
// only until a sweep purges their tombstones, so a cursor older than the
// last tombstone purged is told to list again.
func (s *Server) compactedChanges(c *call, prefix string, after uint64, most int) (any, error) {
	purged, _, err := s.tombstonesPurged(c.ctx)
	if err != nil {
		return nil, wrapStorage("watch", err)
	}
	s.log.Info("watch older than the changes this server holds; answering from storage", "after", after, "user", c.user)
	if after < purged {
		return nil, subjects.Errorf(subjects.CodeWatchBehind,
			"watch fell behind: the deletes after change %d are no longer kept (up to %d swept); list again", after, purged)
	}
	last, err := s.lastFileChange(c.ctx)
	if err != nil {
		return nil, wrapStorage("watch", err)
	}
	reply := subjects.WatchReply{Events: []subjects.ChangeEvent{}, Next: max(after, last), Compacted: true}
	if last <= after {
		return reply, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, compactedChangesWait)
	defer cancel()
	done := false
	read := after // the last meta looked at
	// A rename whose new name's meta is in this reply shows as that one
	// event; one whose new name changed since is a delete of its old name.
	renamed := map[[2]string]bool{}
	err = s.store.Follow(ctx, s.filesStream(), subjects.ObjectMetas(s.cfg.Bucket), after, nil,
		func(md *jetstream.MsgMetadata, m jetstream.Msg) {
			if done {
				return
			}
			seq := md.Sequence.Stream
			read = seq
			ev, renamedTo, err := changeOf(seq, md.Timestamp, m.Data())
			switch {
			case err != nil:
				// As the files index does: a meta no one can read is no
				// file, and no change a watcher could act on.
				s.log.Warn("unreadable file meta message; no change event", "seq", seq, "err", err)
			case ev.Op == subjects.OpRename:
				renamed[[2]string{ev.From, ev.Name}] = true
				fallthrough
			case renamedTo == "" || !renamed[[2]string{ev.Name, renamedTo}]:
				ev.Compacted = true
				if ev, ok := s.visibleChange(c, prefix, ev); ok {
					reply.Events = append(reply.Events, ev)
				}
			}
			if len(reply.Events) == most || seq >= last || md.NumPending == 0 {
				done = true
				cancel()
			}
		})
	if !done && read == after {
		if err == nil {
			err = context.DeadlineExceeded
		}
		return nil, wrapStorage("watch: read file changes", err)
	}
	// Cut short by its time, a read of a large bucket still moves the
	// watch on by what it looked at.
	reply.Next = max(after, read)
	return reply, nil
}
