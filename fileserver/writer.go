package fileserver

// The writer of an upload this server holds. It keeps as many chunk stores
// in flight as the client keeps chunks (subjects.UploadWindow): storing one
// chunk after the other's acknowledgement, as a chain of
// Nats-Expected-Last-Subject-Sequence on the chunk subject needs, would
// make the server's store the slowest step of an upload.
//
// Two things the chain gave must still hold: chunks are stored in order,
// and a holder that was deposed (frozen, then thawed after another server
// took the upload over) stores nothing more. The second comes from fences:
// every chunk names one of the upload's fence subjects in
// Nats-Expected-Last-Subject-Sequence(-Subject), chunk k the fence k mod
// fenceCount, with the sequence that fence had when this holder took the
// upload. Taking an upload over moves every fence on first (fence), so a
// deposed holder's stores fail from then on. (Each chunk in flight names a
// different fence: on a clustered stream JetStream refuses a check naming a
// subject that another message in process names too.) Fences that were
// never moved are empty, and a check for sequence 0 passes: an upload that
// nobody took over costs no fence message at all.
//
// Order comes from one connection and one stream: stores sent in order are
// stored in order, unless one fails (a stream leader lost, too many
// requests) or goes unanswered while the next ones succeed. Then the
// writer repairs: it lets every store in flight end, moves its own fences
// on (a store still on its way can land no more), reads what the chunk
// subject holds past the last chunk known (walk): the next chunk in order
// is kept, anything else is deleted; and sends again what is missing. A
// server taking an upload over walks the same way after fencing. The
// fences live as long as the chunk subject (the storage sweep purges both
// once nothing points at them): a fence purged while its upload's holder
// might still write would let that holder's checks for 0 pass again.

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/ftfs/ftfs/internal/ackwindow"
	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// fenceCount is how many fence subjects an upload has: one per chunk a
// client may have in flight.
const fenceCount = subjects.UploadWindow

// headerFence marks a fence message with its writer, so that a fence move
// whose answer was lost is recognised when it is tried again.
const headerFence = "Ftfs-Fence"

// errDeposed says another server has taken the upload over.
var errDeposed = errors.New("upload taken over by another server")

// errStoreTimeout stands for a store not answered within chunkAttempt.
var errStoreTimeout = errors.New("store not answered in time")

// storing is a chunk whose store is in flight.
type storing struct {
	index   uint32
	data    []byte
	replies []micro.Request // the client's request, and any resent copy
	stops   []func()        // their keepalives
	ack     ackwindow.Ack   // Settled: ack's outcome was taken
	lost    bool            // no outcome in time: the store may still land
	sent    time.Time
}

// answer answers every copy of the chunk's request.
func (p *storing) answer(s *Server, reply any, err error) {
	for _, stop := range p.stops {
		stop()
	}
	for _, r := range p.replies {
		s.reply(r, reply, err)
	}
	p.stops, p.replies = nil, nil
}

// settle waits until the store's outcome is in (and drops it), or until
// it is overdue, or stop.
func (p *storing) settle(stop <-chan struct{}) {
	if p.ack.Future == nil || p.ack.Settled || p.ack.Early != nil {
		return
	}
	select {
	case <-p.ack.Future.Ok():
	case <-p.ack.Future.Err():
	case <-time.After(time.Until(p.sent.Add(chunkAttempt))):
		p.lost = true
	case <-stop:
		return
	}
	p.ack.Settled = true
}

func (u *upload) run() {
	defer func() {
		// Unanswered chunks: the client hears nothing more from this
		// server and moves the upload. Their stores end (or time out)
		// first, so that whoever goes on (an abort purging the chunks, a
		// commit) finds them stored or failed, not on their way.
		for _, p := range u.inflight {
			for _, stop := range p.stops {
				stop()
			}
			p.settle(u.s.ctx.Done())
		}
	}()
	timer := time.NewTimer(chunkAttempt)
	defer timer.Stop()
	for {
		queue := u.queue
		if len(u.inflight) >= subjects.UploadWindow {
			queue = nil
		}
		var stored <-chan *jetstream.PubAck
		var failed <-chan error
		var late <-chan time.Time
		if len(u.inflight) > 0 {
			head := u.inflight[0]
			if head.ack.Future == nil {
				if !u.recover(head.ack.Err) {
					return
				}
				continue
			}
			if head.ack.Early != nil {
				if !u.stored(head.ack.Early) {
					u.forget()
					return
				}
				continue
			}
			stored, failed = head.ack.Future.Ok(), head.ack.Future.Err()
			timer.Reset(time.Until(head.sent.Add(chunkAttempt)))
			late = timer.C
		}
		held := true
		select {
		case <-u.ctx.Done():
			return
		case m := <-queue:
			held = u.take(m)
		case ack := <-stored:
			held = u.stored(ack)
		case err := <-failed:
			u.inflight[0].ack.Settled = true
			held = u.recover(err)
		case <-late:
			u.inflight[0].ack.Settled, u.inflight[0].lost = true, true
			held = u.recover(errStoreTimeout)
		}
		if !held {
			u.forget()
			return
		}
	}
}

// forget drops the writer from the server's holders: the upload is no
// longer held here.
func (u *upload) forget() {
	u.s.holders.forget(u)
}

// take handles a chunk message: the next chunk is sent to storage.
func (u *upload) take(m chunkMsg) bool {
	s := u.s
	next := u.rec.Chunks + uint32(len(u.inflight))
	switch {
	case m.index < u.rec.Chunks:
		s.reply(m.reply, subjects.ChunkAck{Chunk: m.index, Offset: u.rec.Bytes}, nil)
		return true
	case m.index < next: // sent again while its store is in flight
		p := u.inflight[m.index-u.rec.Chunks]
		p.replies = append(p.replies, m.reply)
		p.stops = append(p.stops, s.keepalive(m.reply.Reply()))
		return true
	case m.index > next:
		s.reply(m.reply, nil, subjects.Errorf(subjects.CodeConflict, "upload %s: got chunk %d, expected chunk %d", u.rec.ID, m.index, next))
		return true
	}
	if err := u.admitChunk(len(m.data)); err != nil {
		u.drop(err)
		s.reply(m.reply, nil, err)
		return true
	}
	// A store can take seconds (a stream leader being elected): the client
	// hears that this server is working on it, and moves the upload only
	// when it falls silent (killed, frozen). chunk checked the reply
	// subject is the owner's inbox.
	p := &storing{index: m.index, data: m.data, replies: []micro.Request{m.reply}, stops: []func(){s.keepalive(m.reply.Reply())}}
	u.inflight = append(u.inflight, p)
	u.send(p)
	return true
}

// send publishes a chunk behind its fence, without waiting.
func (u *upload) send(p *storing) {
	msg := nats.NewMsg(u.s.chunkSubject(u.rec.ID))
	msg.Data = p.data
	msg.Header.Set(subjects.HeaderChunk, strconv.FormatUint(uint64(p.index), 10))
	f := int(p.index) % fenceCount
	p.sent, p.lost = time.Now(), false
	p.ack.Sent(u.s.store.PublishAsync(msg, store.Expect{LastSeq: u.fences[f], LastOf: u.s.fenceSubject(u.rec.ID, f)}))
}

// stored takes the acknowledgement of the first chunk in flight. It
// returns false when this server no longer holds the upload.
func (u *upload) stored(ack *jetstream.PubAck) bool {
	if !ackwindow.InOrder(u.rec.LastSeq, ack.Sequence, u.inflight[1:], (*storing).acked) {
		// Not to be repaired here: a checkpoint may already count a chunk
		// stored after the one found out of order. The client resumes the
		// upload, and whoever takes it walks the chunks from the last
		// checkpoint, which counts none of those in question.
		u.s.log.Error("chunks stored out of order; giving the upload up to a resume", "upload", u.rec.ID, "chunk", u.inflight[0].index, "seq", ack.Sequence)
		u.failInflight(u.moved())
		return false
	}
	p := u.inflight[0]
	u.inflight = u.inflight[1:]
	u.failingSince, u.backoff = time.Time{}, 0
	u.accept(p.data, ack.Sequence)
	held := u.saveProgress()
	// The chunk is durable either way.
	p.answer(u.s, subjects.ChunkAck{Chunk: p.index, Offset: u.rec.Bytes}, nil)
	if !held {
		u.failInflight(u.moved())
	}
	return held
}

// acked is where the chunk's store stands with its ack.
func (p *storing) acked() *ackwindow.Ack { return &p.ack }

// accept counts a chunk stored in order at stream sequence seq.
func (u *upload) accept(data []byte, seq uint64) {
	u.rec.count(u.hash, data, seq)
	u.pending++
}

// count counts into rec, and into its digest state h, the next chunk,
// stored at stream sequence seq.
func (rec *uploadRecord) count(h hash.Hash, data []byte, seq uint64) {
	h.Write(data)
	rec.Chunks++
	rec.Bytes += int64(len(data))
	rec.LastSeq = seq
}

// moved answers the chunks of an upload another server has taken over.
func (u *upload) moved() error {
	return subjects.Errorf(subjects.CodeConflict, "upload %s moved to another server: resume it", u.rec.ID)
}

// saveProgress writes a checkpoint when one is due; false when another
// server has taken the upload over.
func (u *upload) saveProgress() bool {
	if u.pending < checkpointChunks && time.Since(u.saved) < checkpointEvery {
		return true
	}
	if err := u.checkpoint(); err != nil {
		u.s.log.Info("upload taken over by another server", "upload", u.rec.ID, "err", err)
		return false
	}
	return true
}

// failInflight answers every chunk in flight with err and forgets them.
func (u *upload) failInflight(err error) {
	for _, p := range u.inflight {
		p.answer(u.s, nil, err)
	}
	u.inflight = nil
}

// recover handles the failed or unanswered store of the first chunk in
// flight. Repairs follow each other with a back-off that a stored chunk
// resets; after chunkRetryFor of failures the chunks in flight fail. It
// returns false when this server no longer holds the upload.
func (u *upload) recover(err error) bool {
	s := u.s
	if store.WrongLastSequence(err) {
		u.failInflight(u.moved())
		return false
	}
	if u.failingSince.IsZero() {
		u.failingSince = time.Now()
	}
	elected := s.store.NextElection()
	for {
		log := s.log.Warn
		if !(isTooManyRequests(err) || store.Unavailable(err) || errors.Is(err, errStoreTimeout)) {
			log = s.log.Error
		}
		log("storing a chunk failed; repairing the upload", "upload", u.rec.ID, "chunk", u.inflight[0].index, "err", err)
		select {
		case <-u.ctx.Done():
			return false
		case <-elected.Done(): // a stream leader lost is back (back-off kept)
		case <-time.After(u.backoff):
			u.backoff = min(max(2*u.backoff, 50*time.Millisecond), time.Second)
		}
		elected = s.store.NextElection()
		err = u.repair()
		switch {
		case err == nil:
			return true
		case errors.Is(err, errDeposed):
			u.failInflight(u.moved())
			return false
		case u.ctx.Err() != nil:
			return false
		case time.Since(u.failingSince) > chunkRetryFor:
			// The subject may hold chunks past the last one known: the
			// server resuming the upload walks it.
			u.failInflight(fmt.Errorf("store chunk %d of upload %s: %w", u.inflight[0].index, u.rec.ID, err))
			return false
		}
	}
}

// repair brings storage and the writer back in step after a failed store:
// every store in flight ends, the fences move on if one went unanswered,
// the chunk subject is walked, what it holds in order is answered and the
// rest sent again.
func (u *upload) repair() error {
	lost := false
	for _, p := range u.inflight {
		p.settle(u.ctx.Done())
		lost = lost || p.lost
	}
	if err := u.ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(u.ctx, 2*chunkAttempt)
	defer cancel()
	// Only a store without an answer can land later. Moving the fences
	// when every store answered would only make the stores sent next meet
	// the fence moves still in process (refused, code 10164).
	if lost {
		if err := u.s.fence(ctx, u.rec.ID, u.fences, false, u.mark); err != nil {
			return err
		}
	}
	// Walk from the last chunk known, on a copy: a walk that fails half
	// way leaves the writer's state as it was, and is made again.
	rec, h := u.rec, cloneHash(u.hash)
	if err := u.s.walk(ctx, &rec, h); err != nil {
		return err
	}
	u.pending += int(rec.Chunks - u.rec.Chunks)
	// Field by field: chunk reads u.rec.Owner from another goroutine.
	u.rec.Chunks, u.rec.Bytes, u.rec.LastSeq, u.hash = rec.Chunks, rec.Bytes, rec.LastSeq, h
	for len(u.inflight) > 0 && u.inflight[0].index < u.rec.Chunks {
		u.inflight[0].answer(u.s, subjects.ChunkAck{Chunk: u.inflight[0].index, Offset: u.rec.Bytes}, nil)
		u.inflight = u.inflight[1:]
	}
	if !u.saveProgress() {
		return errDeposed
	}
	for _, p := range u.inflight {
		u.send(p)
	}
	return nil
}

// fence moves each fence subject of upload id on, to the sequence stored
// in seqs, marking each move with the holder's mark. With read, each must
// be where it is read to be; else where seqs says (this holder's last move,
// or 0: never moved). A move found made with the same mark is the holder's
// own, whose answer was lost. errDeposed when another server moved one.
func (s *Server) fence(ctx context.Context, id string, seqs []uint64, read bool, mark string) error {
	// The fences are independent: moved at once, a takeover or a repair
	// right after a stream leader's election waits for one round of calls.
	errs := make([]error, len(seqs))
	var wg sync.WaitGroup
	for i := range seqs {
		wg.Add(1)
		go func() { // owned here: waited for below
			defer wg.Done()
			errs[i] = s.moveFence(ctx, s.fenceSubject(id, i), &seqs[i], read, mark)
		}()
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		if errors.Is(err, errDeposed) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// moveFence moves one fence subject on (see fence).
func (s *Server) moveFence(ctx context.Context, subj string, seq *uint64, read bool, mark string) error {
	if read {
		*seq = 0
		m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: subj})
		switch {
		case err == nil:
			*seq = m.Sequence
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return fmt.Errorf("read fence: %w", err)
		}
	}
	msg := nats.NewMsg(subj)
	msg.Header.Set(headerFence, mark)
	ack, err := s.store.Publish(ctx, msg, store.Expect{LastSeq: *seq})
	if err == nil {
		*seq = ack.Sequence
	}
	if store.WrongLastSequence(err) {
		// Moved by an attempt of ours whose answer was lost, or by
		// another server.
		m, gerr := s.leaderGet(ctx, store.MsgRequest{LastFor: subj})
		if gerr != nil {
			return fmt.Errorf("read fence: %w", gerr)
		}
		if m.Header.Get(headerFence) != mark {
			return errDeposed
		}
		*seq, err = m.Sequence, nil
	}
	if err != nil {
		return fmt.Errorf("move fence: %w", err)
	}
	return nil
}

// walk reads the chunk subject of upload rec past rec.LastSeq, once the
// fences keep every other writer out: the next chunk in order is counted
// into rec and h, anything else (a chunk stored after one that failed, a
// chunk stored twice) is deleted.
func (s *Server) walk(ctx context.Context, rec *uploadRecord, h hash.Hash) error {
	subj := s.chunkSubject(rec.ID)
	for seq := rec.LastSeq + 1; ; {
		m, err := s.leaderGet(ctx, store.MsgRequest{Seq: seq, NextFor: subj})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return wrapStorage("read stored chunks", err)
		}
		seq = m.Sequence + 1
		if index, ok := chunkIndex(m.Header, rec.ID); !ok || index == rec.Chunks {
			rec.count(h, m.Data, m.Sequence)
			continue
		}
		if err := s.deleteMsg(ctx, m.Sequence); err != nil {
			return wrapStorage("delete a chunk out of order", err)
		}
		s.log.Info("chunk out of order deleted", "upload", rec.ID, "seq", m.Sequence)
	}
}

// deleteMsg deletes the message at stream sequence seq; one deleted
// already (by another walk of the same upload, a client's resume sent
// twice) is no error. nats.go reports that case only in the text of its
// error, so whether the message is still there is read.
func (s *Server) deleteMsg(ctx context.Context, seq uint64) error {
	err := s.store.DeleteMsg(ctx, seq)
	if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if _, gerr := s.leaderGet(ctx, store.MsgRequest{Seq: seq}); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return err
}

// chunkIndex is the index a stored chunk message carries: in HeaderChunk,
// or (stored before fences) at the end of its message ID "<upload>.<index>".
// Without either the chunk was chained and is in order.
func chunkIndex(h nats.Header, id string) (uint32, bool) {
	v := h.Get(subjects.HeaderChunk)
	if v == "" {
		v, _ = strings.CutPrefix(h.Get(store.MsgIDHeader), id+".")
	}
	n, err := strconv.ParseUint(v, 10, 32)
	return uint32(n), err == nil
}

// cloneHash copies a digest state (crypto/sha256 clones).
func cloneHash(h hash.Hash) hash.Hash {
	c, err := h.(hash.Cloner).Clone()
	if err != nil {
		panic(err) // crypto/sha256 always clones
	}
	return c
}
