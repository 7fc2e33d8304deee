package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// Progress reports a transfer as it goes.
type Progress struct {
	Done, Total int64 // bytes; Total is -1 when unknown
	// Instance is the file server holding an upload ("" for downloads).
	Instance string
	// Failovers counts the times the transfer moved to another server or
	// repeated a request a server swallowed.
	Failovers int
	// Resent counts bytes sent or received twice because of failovers.
	Resent int64
}

type transferOptions struct {
	noOverwrite bool
	progress    func(Progress)
}

// TransferOption configures Put and Get.
type TransferOption func(*transferOptions)

// NoOverwrite makes Put fail with ErrConflict when the name exists.
func NoOverwrite() TransferOption { return func(o *transferOptions) { o.noOverwrite = true } }

// OnProgress calls f as the transfer goes (at most every 100ms, and once at
// the end), from the transfer's goroutine.
func OnProgress(f func(Progress)) TransferOption {
	return func(o *transferOptions) { o.progress = f }
}

// reporter throttles progress callbacks.
type reporter struct {
	f    func(Progress)
	p    Progress
	last time.Time
}

func (r *reporter) report(final bool) {
	if r.f == nil || (!final && time.Since(r.last) < 100*time.Millisecond) {
		return
	}
	r.last = time.Now()
	r.f(r.p)
}

func digestOf(h hash.Hash) string {
	return subjects.Digest(h.Sum(nil))
}

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
	if err != nil {
		if !errors.Is(err, ErrIntegrity) {
			c.abort(st.Upload)
		}
		return fi, fmt.Errorf("put %q: %w", name, err)
	}
	up.rep.p.Total = up.chunks.read
	up.rep.report(true)
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

// Get downloads name into w and verifies its size and SHA-256 digest. On
// ErrIntegrity w has received bytes that must not be used.
func (c *Client) Get(ctx context.Context, name string, w io.Writer, opts ...TransferOption) (FileInfo, error) {
	var o transferOptions
	for _, opt := range opts {
		opt(&o)
	}
	fi, content, err := c.getSmall(ctx, name)
	switch {
	case errors.Is(err, ErrReadOnly): // no server here reads a replica: ask the backups'
		fi, err = c.Stat(ctx, name)
	case err == nil && content != nil:
		return fi, c.writeSmall(fi, content, w, o)
	}
	if err != nil {
		return fi, fmt.Errorf("get: %w", err)
	}
	d := &downloader{c: c, fi: fi, w: w, hash: sha256.New(), rep: reporter{f: o.progress, p: Progress{Total: fi.Size}}}
	if err := d.run(ctx); err != nil {
		return fi, fmt.Errorf("get %q: %w", name, err)
	}
	if err := verified(fi, d.done, d.hash); err != nil {
		return fi, err
	}
	d.rep.p.Done = d.done
	d.rep.report(true)
	return fi, nil
}

// getSmall asks for a file's info and, when it is at most a chunk, its
// content (subjects.Get): a small file in one request. A file changed
// between the two reads the server makes is asked for again.
func (c *Client) getSmall(ctx context.Context, name string) (FileInfo, []byte, error) {
	var fi FileInfo
	if err := subjects.ValidName(name); err != nil {
		return fi, nil, fromWire(err)
	}
	var content []byte
	take := func(m *nats.Msg) error {
		if err := json.Unmarshal([]byte(m.Header.Get(subjects.HeaderFile)), &fi); err != nil {
			return fmt.Errorf("%w: undecodable file info: %v", ErrInternal, err)
		}
		if fi.Size <= subjects.ChunkSize {
			content = m.Data
			if content == nil {
				content = []byte{}
			}
		}
		return nil
	}
	for attempt := 0; ; attempt++ {
		err := c.do(ctx, call{subject: subjects.Get, body: subjects.NameRequest{Name: name}, take: take})
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return fi, nil, fmt.Errorf("%q: %w", name, err)
		}
		return fi, content, nil
	}
}

// verified says whether n bytes hashing to h are the content fi describes.
func verified(fi FileInfo, n int64, h hash.Hash) error {
	if n != fi.Size || digestOf(h) != fi.Digest {
		return fmt.Errorf("get %q: %w: got %d bytes with digest %s, want %d bytes with %s", fi.Name, ErrIntegrity, n, digestOf(h), fi.Size, fi.Digest)
	}
	return nil
}

// writeSmall checks and writes the content of a file got in one request.
func (c *Client) writeSmall(fi FileInfo, content []byte, w io.Writer, o transferOptions) error {
	h := sha256.New()
	h.Write(content)
	if err := verified(fi, int64(len(content)), h); err != nil {
		return err
	}
	if _, err := w.Write(content); err != nil {
		return fmt.Errorf("get %q: write: %w", fi.Name, err)
	}
	rep := reporter{f: o.progress, p: Progress{Done: fi.Size, Total: fi.Size}}
	rep.report(true)
	return nil
}

// downloader asks for batches of chunks after a stream-sequence cursor;
// any server can serve any batch, so a lost server costs one batch request.
// While storage is read-only it asks a backup's replica for bytes from an
// offset instead; both cursors move together, so it can switch either way.
type downloader struct {
	c        *Client
	fi       FileInfo
	w        io.Writer
	hash     hash.Hash
	done     int64  // bytes received and handed to the sink
	after    uint64 // stream sequence of the last chunk received
	streamAt int64  // bytes the chunks up to after hold
	replica  bool   // ask ReplicaDownload (storage is read-only)
	misses   int    // batches that found nothing though the file was unchanged
	rep      reporter

	prefix  string // of the batches' reply subjects
	batches int    // batch requests sent
	// While a batch comes, the next one is asked for ahead, guessing its
	// cursor: the batch's chunks are usually consecutive in the stream (the
	// file was stored alone), so it ends at its first chunk's sequence plus
	// DownloadBatch-1. The guess is used only if the batch did end there,
	// and the next request's wait is hidden behind the batch's transfer.
	next    *batchRequest // asked ahead
	early   []*nats.Msg   // next's messages that came before it was due
	noGuess bool          // a guess went wrong or a batch was given up

	// The sink writes and hashes what receive takes, in its own goroutine,
	// so that neither holds up the reading nor the next batch request.
	sink     chan<- []byte
	sinkDone <-chan struct{} // closed when the sink has ended
	sinkErr  error           // why the sink ended early; read after sinkDone
	written  atomic.Int64    // bytes the sink has written
}

// sinkDepth is how many chunks may wait for the sink: enough to cover the
// hashing of a batch's tail while the next batch is asked for, few enough
// to keep memory small.
const sinkDepth = 4

// startSink starts the goroutine writing and hashing the data sent to
// d.sink; the returned stop closes d.sink and waits for the goroutine.
func (d *downloader) startSink() (stop func()) {
	ch := make(chan []byte, sinkDepth)
	done := make(chan struct{})
	d.sink, d.sinkDone = ch, done
	go func() {
		defer close(done)
		for data := range ch {
			if _, err := d.w.Write(data); err != nil {
				d.sinkErr = fmt.Errorf("write: %w", err)
				return
			}
			d.hash.Write(data)
			d.written.Add(int64(len(data)))
		}
	}()
	return func() {
		close(ch)
		<-done
	}
}

// deliver hands data to the sink.
func (d *downloader) deliver(ctx context.Context, data []byte) error {
	select {
	case d.sink <- data:
		return nil
	case <-d.sinkDone:
		return d.sinkErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *downloader) run(ctx context.Context) (err error) {
	if d.fi.Size == 0 {
		return nil
	}
	d.prefix = d.c.nc.NewInbox()
	msgs := make(chan *nats.Msg, 2*subjects.DownloadBatch+8)
	sub, err := d.c.nc.ChanSubscribe(d.prefix+".*", msgs)
	if err != nil {
		return fmt.Errorf("%w: subscribe: %v", ErrUnavailable, err)
	}
	defer sub.Unsubscribe()
	stop := d.startSink()
	defer func() {
		stop()
		if err == nil {
			err = d.sinkErr
		}
	}()
	backoff := 50 * time.Millisecond
	for d.done < d.fi.Size {
		cur := d.next
		d.next = nil
		if cur == nil || cur.after != d.after || cur.offset != d.done || d.replica {
			if cur != nil {
				// A wrong guess: what it brings is dropped as late. It
				// may still be coming, so no other guess goes out,
				// which keeps at most two batches in msgs.
				d.c.opts.log.Debug("download: batch asked ahead with a wrong cursor; no longer asking ahead", "name", d.fi.Name, "guessed", cur.after, "cursor", d.after)
				d.noGuess = true
			}
			d.early = nil
			if cur, err = d.ask(d.after, d.done); err != nil {
				return err
			}
		}
		retry, err := d.receive(ctx, msgs, cur)
		if err != nil {
			return err
		}
		if retry {
			// Answers to the batch given up may still come.
			d.noGuess = true
			d.rep.p.Failovers++
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
	return nil
}

// batchRequest is a batch asked for.
type batchRequest struct {
	reply  string
	after  uint64          // the cursor it was sent with
	offset int64           // the offset it was sent with
	gone   <-chan struct{} // closed when a file server goes after it was sent
}

// ask sends a batch request for the chunks after cursor after (or, from a
// replica, the bytes from offset).
func (d *downloader) ask(after uint64, offset int64) (*batchRequest, error) {
	d.batches++
	r := &batchRequest{reply: d.prefix + "." + strconv.Itoa(d.batches), after: after, offset: offset, gone: d.c.replies.serverGone()}
	m := nats.NewMsg(subjects.For(d.c.user, subjects.Download))
	if d.replica {
		m.Subject = subjects.For(d.c.user, subjects.ReplicaDownload)
	}
	m.Reply = r.reply
	m.Header.Set(subjects.HeaderSession, d.c.Token())
	m.Data, _ = json.Marshal(subjects.DownloadRequest{Name: d.fi.Name, Version: d.fi.Version, After: after, Offset: offset, Max: subjects.DownloadBatch})
	if err := d.c.nc.PublishMsg(m); err != nil && !retryable(err) {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return r, nil
}

// askAhead asks for the batch after the current one, if the current one
// starts at stream sequence first and byte at, holds chunks of size bytes
// and is not the last.
func (d *downloader) askAhead(first uint64, at int64, size int) error {
	end := at + int64(subjects.DownloadBatch)*int64(size)
	if d.noGuess || d.replica || d.done != d.streamAt || end >= d.fi.Size {
		return nil
	}
	next, err := d.ask(first+subjects.DownloadBatch-1, end)
	d.next = next
	return err
}

// stillThere decides what a batch that found no chunk means: the file
// changed (an error), or a JetStream replica that answered has not caught
// up yet with a file just written (ask again, a bounded number of times).
func (d *downloader) stillThere(ctx context.Context) (retry bool, err error) {
	fi, err := d.c.Stat(ctx, d.fi.Name)
	if err == nil && fi.Version == d.fi.Version && d.misses < 20 {
		d.misses++
		return true, nil
	}
	return false, &Error{Code: subjects.CodeConflict, Message: fmt.Sprintf("%q changed or was deleted during the download", d.fi.Name)}
}

// receive takes one batch's messages. retry says the batch must be asked
// again (its server died or was frozen, or storage was busy).
func (d *downloader) receive(ctx context.Context, msgs <-chan *nats.Msg, cur *batchRequest) (retry bool, err error) {
	timer := time.NewTimer(d.c.opts.timeout)
	defer timer.Stop()
	gone := cur.gone
	started := false // messages of this batch have come
	early := d.early
	d.early = nil
	var first uint64 // stream sequence of the batch's first chunk
	var firstAt int64
	firstLen := 0
	chunks := 0 // of the batch, all consecutive in the stream so far
	aheadTried := false
	for {
		var m *nats.Msg
		if len(early) > 0 {
			m, early = early[0], early[1:]
		} else {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-timer.C:
				d.c.opts.log.Warn("download batch timed out; asking again", "name", d.fi.Name)
				return true, nil
			case <-gone:
				if started {
					gone = nil // JetStream is sending it: no file server involved
					continue
				}
				return true, nil
			case m = <-msgs:
			}
		}
		if d.next != nil && m.Subject == d.next.reply {
			// At most a batch and its end: a guessed request is sent once.
			d.early = append(d.early, m)
			continue
		}
		if m.Subject != cur.reply {
			continue // a late message of a batch already given up
		}
		timer.Reset(d.c.opts.timeout)
		started = true
		if e := errorIn(m.Header); e != nil {
			switch {
			case e.Code == subjects.CodeReadOnly && !d.replica:
				d.replica = true
				return true, nil
			case e.Code.Retryable() || e.Code == subjects.CodeInternal:
				return true, nil
			}
			return false, e
		}
		switch m.Header.Get(subjects.HeaderStatus) {
		case "":
		case "204": // end of batch
			return false, nil
		case "404": // nothing after the cursor: gone, or a lagging replica
			return d.stillThere(ctx)
		case "503": // no responders: on the replica subject, no backup is up
			d.replica = false
			return true, nil
		default: // 408, ...: ask again
			return true, nil
		}
		// The part of the chunk past what is written already.
		var fresh []byte
		if off := m.Header.Get(subjects.HeaderOffset); off != "" {
			at, err := strconv.ParseInt(off, 10, 64)
			if err != nil || at > d.done {
				return true, nil // not the piece asked for: ask again
			}
			fresh = m.Data[min(d.done-at, int64(len(m.Data))):]
		} else {
			seq, err := strconv.ParseUint(m.Header.Get(subjects.HeaderStreamSeq), 10, 64)
			if err != nil {
				return false, fmt.Errorf("%w: chunk without stream sequence", ErrInternal)
			}
			if seq <= d.after {
				d.rep.p.Resent += int64(len(m.Data))
				continue
			}
			at := d.streamAt
			d.after, d.streamAt = seq, at+int64(len(m.Data))
			fresh = m.Data[min(max(d.done-at, 0), int64(len(m.Data))):]
			if chunks == 0 {
				first, firstAt, firstLen = seq, at, len(m.Data)
			}
			if seq == first+uint64(chunks) {
				chunks++
			}
		}
		d.rep.p.Resent += int64(len(m.Data) - len(fresh))
		if len(fresh) == 0 {
			continue
		}
		if err := d.deliver(ctx, fresh); err != nil {
			return false, err
		}
		d.done += int64(len(fresh))
		d.rep.p.Done = d.written.Load()
		d.rep.report(false)
		if chunks == 2 && !aheadTried {
			aheadTried = true
			if err := d.askAhead(first, firstAt, firstLen); err != nil {
				return false, err
			}
		}
		if d.done >= d.fi.Size {
			return false, nil
		}
	}
}
