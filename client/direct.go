package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/ackwindow"
	"github.com/ftfs/ftfs/subjects"
)

// A direct upload (subjects.DirectUpload) publishes its chunks into
// storage over a connection of its own, which may publish there and
// nowhere else; a server only opens, resumes and commits it. Relayed
// through a server, every byte would cross the broker twice.

const (
	// directAckWait is how long a chunk's store may go unacknowledged
	// before the upload is resumed: a store that reached a stream leader
	// as it died is never answered.
	directAckWait = 2 * time.Second
	// directRetryFor bounds how long an upload goes on failing to store
	// a chunk, resuming with a back-off, before it gives up.
	directRetryFor = time.Minute
)

var (
	errAckTimeout  = errors.New("chunk store not acknowledged in time")
	errOutOfOrder  = errors.New("chunk stored after a later one")
	errReconnected = errors.New("upload connection moved to another broker")
)

// directChunk is a chunk sent and not yet counted stored.
type directChunk struct {
	index uint32
	data  []byte
	ack   ackwindow.Ack
	sent  time.Time
}

// directUploader publishes the chunks of a direct upload, keeping a window
// of them in flight, and counts a chunk stored only when every chunk
// before it is stored at a lower stream sequence; on any doubt it resumes.
type directUploader struct {
	c       *Client
	st      subjects.UploadState
	d       subjects.DirectUpload // fences replaced at every resume
	chunks  chunkReader           // limited to the announced size
	next    uint32                // index of the next chunk to read
	stored  uint32                // chunks counted stored, in order
	lastSeq uint64                // stream sequence of the last of them (0 after a resume)
	pending []*directChunk
	rep     reporter

	nc          *nats.Conn
	js          jetstream.JetStream
	reconnected chan struct{}
}

func newDirectUploader(c *Client, st subjects.UploadState, r io.Reader, size int64, o transferOptions) *directUploader {
	return &directUploader{c: c, st: st, d: *st.Direct, chunks: newChunkReader(r, st.ChunkSize, size),
		rep: reporter{f: o.progress, p: Progress{Total: size, Instance: st.Instance}}}
}

// connect opens the upload's connection. A broker asks a file server to
// authorize it; while none answers (killed, frozen, restarting) nats.go
// keeps trying, for up to the default budget.
func (u *directUploader) connect(ctx context.Context) error {
	u.reconnected = make(chan struct{}, 1)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts := append(connOptions(cctx, u.c.opts, u.c.opts.name+"-upload", u.c.user),
		nats.Token(u.d.Token),
		// The connection may subscribe below its upload's own inbox only.
		nats.CustomInboxPrefix(subjects.UploadInbox(u.c.user, u.st.Upload)),
		nats.RetryOnFailedConnect(true),
		// A chunk published while disconnected fails at once instead of
		// waiting in a buffer to be sent behind fences a resume moved.
		nats.ReconnectBufSize(-1),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			u.c.opts.log.Info("upload connection reconnected", "broker", nc.ConnectedUrlRedacted())
			select {
			case u.reconnected <- struct{}{}:
			default:
			}
		}))
	nc, err := nats.Connect(strings.Join(u.c.servers, ","), opts...)
	if err != nil {
		return fmt.Errorf("%w: upload connection: %v", ErrUnavailable, err)
	}
	wait, stop := context.WithTimeout(ctx, defaultBudget)
	defer stop()
	if err := waitConnected(wait, nc); err != nil {
		nc.Close()
		return fmt.Errorf("%w: upload connection: no broker accepted it in %v", ErrUnavailable, defaultBudget)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("upload connection: %w", err)
	}
	u.nc, u.js = nc, js
	return nil
}

// settle waits, up to directAckWait, until the chunks in flight are
// stored or refused: an abort sent while some are on their way (a reader
// that gave more than it announced stops the upload mid-window) would
// purge the upload's chunks before they land, and leave them stored.
func (u *directUploader) settle() {
	t := time.NewTimer(directAckWait)
	defer t.Stop()
	select {
	case <-u.js.PublishAsyncComplete():
	case <-t.C:
	}
}

func (u *directUploader) close() {
	if u.nc != nil {
		u.nc.Close()
	}
}

// run sends every chunk and returns once all are counted stored.
func (u *directUploader) run(ctx context.Context) error {
	var failingSince time.Time
	var backoff time.Duration
	timer := time.NewTimer(directAckWait)
	defer timer.Stop()
	for {
		for !u.chunks.eof && len(u.pending) < u.st.Window {
			if err := u.readChunk(); err != nil {
				return err
			}
		}
		if len(u.pending) == 0 {
			return nil
		}
		head := u.pending[0]
		var failure error
		switch {
		case head.ack.Err != nil:
			failure = head.ack.Err
		case head.ack.Early != nil:
			failure = u.count(head.ack.Early)
		default:
			timer.Reset(time.Until(head.sent.Add(directAckWait)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case ack := <-head.ack.Future.Ok():
				failure = u.count(ack)
			case err := <-head.ack.Future.Err():
				failure = err
			case <-timer.C:
				failure = errAckTimeout
			case <-u.reconnected:
				failure = errReconnected
			}
		}
		if failure == nil {
			failingSince, backoff = time.Time{}, 0
			continue
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if time.Since(failingSince) > directRetryFor {
			return fmt.Errorf("%w: store chunk %d: %v", ErrUnavailable, head.index, failure)
		}
		u.c.opts.log.Warn("storing a chunk failed; resuming the upload", "upload", u.st.Upload, "chunk", head.index, "err", failure)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
		if err := u.resume(ctx); err != nil {
			return err
		}
	}
}

// count takes the ack of the first chunk in flight: it counts the chunk
// stored if it was stored after every chunk before it and before every
// chunk after it (ackwindow.InOrder).
func (u *directUploader) count(ack *jetstream.PubAck) error {
	if !ackwindow.InOrder(u.lastSeq, ack.Sequence, u.pending[1:], (*directChunk).acked) {
		return errOutOfOrder
	}
	head := u.pending[0]
	u.pending = u.pending[1:]
	u.stored++
	u.lastSeq = ack.Sequence
	u.chunks.reuse(head.data)
	u.rep.p.Done += int64(len(head.data))
	u.rep.report(false)
	return nil
}

func (u *directUploader) readChunk() error {
	chunk, err := u.chunks.next()
	if chunk == nil {
		return err
	}
	p := &directChunk{index: u.next, data: chunk}
	u.pending = append(u.pending, p)
	u.publish(p)
	u.next++
	return nil
}

// acked is where the chunk's publish stands with its ack.
func (p *directChunk) acked() *ackwindow.Ack { return &p.ack }

// publish sends a chunk behind its fence, without waiting.
func (u *directUploader) publish(p *directChunk) {
	m := nats.NewMsg(u.d.Subject)
	m.Data = p.data
	m.Header.Set(subjects.HeaderChunk, strconv.FormatUint(uint64(p.index), 10))
	f := u.d.Fences[int(p.index)%len(u.d.Fences)]
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(f.Seq, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, f.Subject)
	p.sent = time.Now()
	// No retry inside nats.go: a publish it sent again later would be
	// stored after the chunks sent behind it.
	p.ack.Sent(u.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0)))
}

// resume asks a server to put the stored chunks in order behind new
// fences, and sends again the chunks from the first one not stored.
func (u *directUploader) resume(ctx context.Context) error {
	var st subjects.UploadState
	err := u.c.do(ctx, call{subject: subjects.UploadResume, body: subjects.UploadRequest{Upload: u.st.Upload}, reply: &st})
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if st.Direct == nil || len(st.Direct.Fences) == 0 {
		return fmt.Errorf("resume: %w: no fences for a direct upload", ErrInternal)
	}
	if st.NextChunk < u.stored || st.NextChunk > u.next {
		return fmt.Errorf("resume: %w: server found chunks 0 to %d stored, the client counted %d and sent %d", ErrIntegrity, st.NextChunk, u.stored, u.next)
	}
	u.rep.p.Failovers++
	u.rep.p.Instance = st.Instance
	for len(u.pending) > 0 && u.pending[0].index < st.NextChunk {
		u.chunks.reuse(u.pending[0].data)
		u.pending = u.pending[1:]
	}
	u.stored, u.lastSeq = st.NextChunk, 0 // chunks sent from now on are stored after the walked ones
	u.d.Fences = st.Direct.Fences
	u.rep.p.Done = st.Offset
	u.c.opts.log.Info("upload resumed", "upload", u.st.Upload, "chunk", st.NextChunk)
	// A reconnect until now lost nothing the chunks about to be sent
	// again could miss: it needs no resume of its own.
	select {
	case <-u.reconnected:
	default:
	}
	for _, p := range u.pending {
		u.rep.p.Resent += int64(len(p.data))
		u.publish(p)
	}
	return nil
}

// putDirect uploads a file of a known size over its own connection.
func (c *Client) putDirect(ctx context.Context, name string, st subjects.UploadState, r io.Reader, size int64, o transferOptions) (FileInfo, error) {
	var fi FileInfo
	up := newDirectUploader(c, st, r, size, o)
	err := up.connect(ctx)
	if err == nil {
		if err = up.run(ctx); err != nil {
			up.settle()
		}
	}
	up.close()
	if err == nil && up.chunks.read != size {
		err = fmt.Errorf("%w: announced %d bytes, the reader gave %d", ErrIntegrity, size, up.chunks.read)
	}
	if err != nil {
		c.abort(st.Upload)
		return fi, fmt.Errorf("put %q: %w", name, err)
	}
	for attempt := 0; ; attempt++ {
		err = c.do(ctx, call{subject: subjects.UploadCommit, reply: &fi, mutating: true,
			body: subjects.UploadCommitRequest{Upload: st.Upload, Size: up.chunks.read, Digest: digestOf(up.chunks.hash), Chunks: up.stored}})
		if e := (*Error)(nil); errors.As(err, &e) && e.Reason == subjects.ReasonResume && attempt < 2 {
			// Storage holds a chunk twice: a resume walks it into order.
			if err = up.resume(ctx); err == nil && len(up.pending) == 0 {
				continue
			}
		}
		break
	}
	return c.endPut(name, st.Upload, fi, err, &up.rep, up.chunks.read)
}
