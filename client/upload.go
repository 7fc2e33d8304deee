package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// Put uploads r as name. size is the number of bytes r will give, or -1 if
// unknown. The file becomes visible only once complete and verified; on
// failure nothing is stored.
func (c *Client) Put(ctx context.Context, name string, r io.Reader, size int64, opts ...TransferOption) (FileInfo, error) {
	var fi FileInfo
	if err := subjects.ValidName(name); err != nil {
		return fi, fmt.Errorf("put: %w", fromWire(err))
	}
	var o transferOptions
	for _, opt := range opts {
		opt(&o)
	}
	if size >= 0 && size <= subjects.MaxPutSize {
		return c.putWhole(ctx, name, r, size, o)
	}
	// A file of known size goes straight into storage (direct.go); one of
	// unknown size through the server holding its upload, which checks
	// every chunk against the limits.
	direct := size >= 0 && !c.opts.relayUploads
	var st subjects.UploadState
	err := c.do(ctx, call{subject: subjects.UploadOpen, body: subjects.UploadOpenRequest{Name: name, Size: size, Overwrite: !o.noOverwrite, Direct: direct}, reply: &st})
	if err != nil {
		return fi, fmt.Errorf("put %q: %w", name, err)
	}
	if st.Direct != nil {
		return c.putDirect(ctx, name, st, r, size, o)
	}
	up := &uploader{c: c, st: st, chunks: newChunkReader(r, st.ChunkSize, -1), unacked: map[uint32][]byte{},
		rep: reporter{f: o.progress, p: Progress{Total: size, Instance: st.Instance}}}
	if err := up.run(ctx); err != nil {
		c.abort(st.Upload)
		return fi, fmt.Errorf("put %q: %w", name, err)
	}
	// To the holder first (the upload may have moved: up.st), any server
	// when it does not answer.
	err = c.do(ctx, call{subject: subjects.UploadCommitAt(up.st.Instance), otherwise: subjects.UploadCommit, reply: &fi, mutating: true,
		body: subjects.UploadCommitRequest{Upload: st.Upload, Size: up.chunks.read, Digest: digestOf(up.chunks.hash)}})
	return c.endPut(name, st.Upload, fi, err, &up.rep, up.chunks.read)
}

// endPut ends a put whose commit answered err: an upload whose commit
// failed is aborted, unless its content failed the check (ErrIntegrity:
// the server purged it already), and a put that succeeded reports its
// last progress, of size bytes.
func (c *Client) endPut(name, upload string, fi FileInfo, err error, rep *reporter, size int64) (FileInfo, error) {
	if err != nil {
		if !errors.Is(err, ErrIntegrity) {
			c.abort(upload)
		}
		return fi, fmt.Errorf("put %q: %w", name, err)
	}
	rep.p.Total = size
	rep.report(true)
	return fi, nil
}

// putWhole puts a file of a known size of at most one chunk in one request
// (subjects.Put): no upload to open, hold or commit. A request whose server
// dies is sent again whole, with the same request ID.
func (c *Client) putWhole(ctx context.Context, name string, r io.Reader, size int64, o transferOptions) (FileInfo, error) {
	var fi FileInfo
	data := make([]byte, size+1) // one more: a reader giving more than size is caught
	n, err := io.ReadFull(r, data)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fi, fmt.Errorf("put %q: read: %w", name, err)
	}
	if int64(n) > size {
		return fi, fmt.Errorf("put %q: %w: announced %d bytes, the reader gives more", name, ErrIntegrity, size)
	}
	if int64(n) < size {
		return fi, fmt.Errorf("put %q: %w: announced %d bytes, the reader gave %d", name, ErrIntegrity, size, n)
	}
	data = data[:size]
	h := sha256.New()
	h.Write(data)
	req, err := json.Marshal(subjects.PutRequest{Name: name, Size: size, Digest: digestOf(h), Overwrite: !o.noOverwrite})
	if err != nil {
		return fi, fmt.Errorf("put %q: %w", name, err)
	}
	err = c.do(ctx, call{subject: subjects.Put, raw: data, header: nats.Header{subjects.HeaderPut: {string(req)}}, reply: &fi, mutating: true})
	if err != nil {
		return fi, fmt.Errorf("put %q: %w", name, err)
	}
	rep := reporter{f: o.progress, p: Progress{Done: size, Total: size}}
	rep.report(true)
	return fi, nil
}

// abort drops an unfinished upload; the servers' janitor would otherwise do
// it once the upload has been idle long enough.
func (c *Client) abort(upload string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = c.do(ctx, call{subject: subjects.UploadAbort, body: subjects.UploadRequest{Upload: upload}, mutating: true})
}

// uploader streams chunks to the server holding the upload, keeping a
// window of unacknowledged chunks whose bytes it keeps for re-sending.
type uploader struct {
	c       *Client
	st      subjects.UploadState
	chunks  chunkReader
	next    uint32            // index of the next chunk to read
	unacked map[uint32][]byte // sent, not yet acknowledged
	rep     reporter

	inbox string
	acks  chan *nats.Msg
	sub   *nats.Subscription
}

func (u *uploader) run(ctx context.Context) error {
	defer func() {
		if u.sub != nil {
			_ = u.sub.Unsubscribe()
		}
	}()
	if err := u.listen(); err != nil {
		return err
	}
	progress := time.Now()
	gone := u.c.replies.serverGone()
	holderGone := make(chan string, 1) // the instance a probe found gone
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends probes in flight
	for {
		for !u.chunks.eof && len(u.unacked) < u.st.Window {
			if err := u.readChunk(); err != nil {
				return err
			}
		}
		if u.chunks.eof && len(u.unacked) == 0 {
			return nil
		}
		wait := time.Until(progress.Add(u.stall()))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-gone:
			gone = u.c.replies.serverGone()
			u.probeHolder(ctx, holderGone)
			continue
		case instance := <-holderGone:
			if instance != u.st.Instance {
				continue // the upload has moved since
			}
			u.c.opts.log.Warn("upload holder gone; resuming on another server", "upload", u.st.Upload, "instance", u.st.Instance)
		case m := <-u.acks:
			ok, fatal := u.handleAck(m)
			if fatal != nil {
				return fatal
			}
			if ok {
				progress = time.Now()
				continue
			}
		case <-time.After(wait):
			u.c.opts.log.Warn("upload stalled; resuming on another server", "upload", u.st.Upload, "instance", u.st.Instance)
		}
		if err := u.failover(ctx); err != nil {
			return err
		}
		progress = time.Now()
	}
}

// stall is how long an upload may go without a word from its holder (an
// ack, or a keepalive while a store is slow) before it moves to another
// server: the request timeout, and half again, since acks come only
// between stores. A killed holder is noticed at once anyway (no
// responders, or its broker's notice).
func (u *uploader) stall() time.Duration { return max(u.c.opts.timeout*3/2, time.Second) }

// probeHolder finds out, after a broker said some file server went,
// whether it was the one holding this upload, and if so says it on gone.
// The chunks it had are lost with it, and with a full window none would
// follow to draw a "no responders", so the upload would wait out the stall.
// The probe repeats the oldest chunk in flight (a copy: its buffer may be
// reused meanwhile), which a live holder acknowledges again.
func (u *uploader) probeHolder(ctx context.Context, gone chan<- string) {
	oldest, ok := uint32(0), false
	for i := range u.unacked {
		if !ok || i < oldest {
			oldest, ok = i, true
		}
	}
	if !ok {
		return
	}
	m := u.chunkMsg(oldest, bytes.Clone(u.unacked[oldest]))
	m.Reply = ""
	instance := u.st.Instance
	go func() {
		ctx, cancel := context.WithTimeout(ctx, u.c.opts.timeout)
		defer cancel()
		if _, err := u.c.nc.RequestMsgWithContext(ctx, m); errors.Is(err, nats.ErrNoResponders) {
			u.c.opts.log.Info("upload holder has no subscription left", "instance", instance)
			select {
			case gone <- instance:
			default:
			}
		}
	}()
}

// listen opens a fresh reply subject, so that late acks from a server the
// upload has left are never mistaken for new ones.
func (u *uploader) listen() error {
	if u.sub != nil {
		_ = u.sub.Unsubscribe()
	}
	u.inbox = u.c.nc.NewInbox()
	u.acks = make(chan *nats.Msg, 4*u.st.Window)
	sub, err := u.c.nc.ChanSubscribe(u.inbox, u.acks)
	if err != nil {
		return fmt.Errorf("%w: subscribe: %v", ErrUnavailable, err)
	}
	u.sub = sub
	return nil
}

func (u *uploader) readChunk() error {
	chunk, err := u.chunks.next()
	if chunk == nil {
		return err
	}
	u.unacked[u.next] = chunk
	if err := u.send(u.next, chunk); err != nil {
		return err
	}
	u.next++
	return nil
}

func (u *uploader) chunkMsg(index uint32, data []byte) *nats.Msg {
	m := nats.NewMsg(subjects.For(u.c.user, subjects.Chunk(u.st.Instance)))
	m.Reply = u.inbox
	m.Header.Set(subjects.HeaderUpload, u.st.Upload)
	m.Header.Set(subjects.HeaderChunk, strconv.FormatUint(uint64(index), 10))
	m.Data = data
	return m
}

func (u *uploader) send(index uint32, data []byte) error {
	m := u.chunkMsg(index, data)
	if err := u.c.nc.PublishMsg(m); err != nil && !retryable(err) {
		return fmt.Errorf("%w: send chunk: %v", ErrUnavailable, err)
	}
	return nil
}

// handleAck takes one reply on the ack subject. ok means progress; a nil
// fatal with !ok means the upload must move to another server.
func (u *uploader) handleAck(m *nats.Msg) (ok bool, fatal error) {
	switch m.Header.Get(subjects.HeaderStatus) {
	case "503":
		return false, nil // the holder is gone
	case "100":
		return true, nil // the holder is storing a chunk, slowly
	}
	if e := errorIn(m.Header); e != nil {
		switch e.Code {
		case subjects.CodeNotFound, subjects.CodeConflict, subjects.CodeBusy, subjects.CodeUnavailable, subjects.CodeInternal:
			return false, nil
		}
		return false, e
	}
	var ack subjects.ChunkAck
	if err := json.Unmarshal(m.Data, &ack); err != nil {
		return false, fmt.Errorf("%w: undecodable chunk ack: %v", ErrInternal, err)
	}
	// Chunks are stored in order: an ack covers every chunk up to it.
	u.chunks.free = release(u.unacked, uint64(ack.Chunk)+1, u.chunks.free)
	u.rep.p.Done = max(u.rep.p.Done, ack.Offset)
	u.rep.report(false)
	return true, nil
}

// release drops from unacked every chunk the server has stored, those
// numbered below stored (a count: uint64, so that an ack of the last
// possible chunk covers it too), and returns free with their buffers
// appended for reuse. The chunks from stored on stay, to be sent again.
func release(unacked map[uint32][]byte, stored uint64, free [][]byte) [][]byte {
	for i, b := range unacked {
		if uint64(i) < stored {
			free = append(free, b[:cap(b)])
			delete(unacked, i)
		}
	}
	return free
}

// failover asks any server to resume the upload and re-sends what it has
// not stored.
func (u *uploader) failover(ctx context.Context) error {
	var st subjects.UploadState
	err := u.c.do(ctx, call{subject: subjects.UploadResume, body: subjects.UploadRequest{Upload: u.st.Upload}, reply: &st})
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	u.rep.p.Failovers++
	u.rep.p.Instance = st.Instance
	u.st.Instance, u.st.Window = st.Instance, st.Window
	u.chunks.free = release(u.unacked, uint64(st.NextChunk), u.chunks.free)
	if _, ok := u.unacked[st.NextChunk]; !ok && st.NextChunk < u.next {
		return fmt.Errorf("%w: server resumes at chunk %d, which the client no longer holds", ErrIntegrity, st.NextChunk)
	}
	u.rep.p.Done = st.Offset
	u.c.opts.log.Info("upload resumed", "upload", u.st.Upload, "instance", st.Instance, "chunk", st.NextChunk)
	if err := u.listen(); err != nil {
		return err
	}
	for i := st.NextChunk; i < u.next; i++ {
		b := u.unacked[i]
		u.rep.p.Resent += int64(len(b))
		if err := u.send(i, b); err != nil {
			return err
		}
	}
	return nil
}
