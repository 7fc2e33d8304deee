package client

import (
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

// Get downloads name into w and verifies its size and SHA-256 digest. On
// ErrIntegrity w has received bytes that must not be used.
func (c *Client) Get(ctx context.Context, name string, w io.Writer, opts ...TransferOption) (FileInfo, error) {
	var o transferOptions
	for _, opt := range opts {
		opt(&o)
	}
	fi, content, err := c.getSmall(ctx, name)
	if err == nil && o.version != "" && fi.Version != o.version {
		return fi, fmt.Errorf("get %q: %w: version %s is now %s", name, ErrConflict, o.version, fi.Version)
	}
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

	// seek: the download starts at done, in the middle of the file
	// (GetFrom), and its first batch asks the server to find that chunk.
	seek bool
	skip *skipWriter // GetFrom's: the bytes before its offset

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
	m := nats.NewMsg("")
	if d.replica {
		d.c.address(m, subjects.ReplicaDownload, true)
	} else {
		d.c.address(m, subjects.Download, true)
	}
	m.Reply = r.reply
	m.Data, _ = json.Marshal(subjects.DownloadRequest{Name: d.fi.Name, Version: d.fi.Version, After: after, Offset: offset, Max: subjects.DownloadBatch,
		Seek: d.seek && after == 0 && offset > 0 && !d.replica})
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
			case e.Reason == subjects.ReasonNotContiguous && d.seek && d.after == 0:
				d.readFromStart()
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
